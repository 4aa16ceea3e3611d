"""Workflows: MixFlow classes in user files, registered with versions, run in child processes."""
