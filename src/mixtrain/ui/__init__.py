"""The web dashboard (`mixtrain ui`): server-rendered pages over the SDK (`MixClient`).

An entry point like `cli/`: nothing imports it. It keeps no state of its own — every page reads the
same stores the CLI does — except caches (thumbnails, immutable snapshot pages) and login sessions.
"""
