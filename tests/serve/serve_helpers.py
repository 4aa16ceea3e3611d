"""Kept for tests written before the harness: import from `harness` / `harness.serve` instead."""

from harness import BIN, REPO
from harness import cli_env as env_for
from harness.serve import SETUP, ImageHost, Server, data_url, png, setup_models

__all__ = ["BIN", "REPO", "SETUP", "ImageHost", "Server", "data_url", "env_for", "png", "setup_models"]
