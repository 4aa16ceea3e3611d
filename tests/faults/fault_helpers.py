"""Kept for tests written before the harness: import from `harness` / `harness.faults` instead."""

from harness import Mix as CLI
from harness.faults import clean_error, files_under, fill

__all__ = ["CLI", "clean_error", "files_under", "fill"]
