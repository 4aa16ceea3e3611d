"""Encrypted secret store."""
