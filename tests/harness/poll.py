"""Waiting for a condition, and reading run state in-process (cheaper than a CLI call per poll)."""

from __future__ import annotations

import os
import time


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Call ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def registry(cli):
    """The run table of ``cli``'s home, read in this process."""
    from unittest import mock

    from mixtrain.settings import load_settings
    from mixtrain.workflows.registry import WorkflowRegistry

    with mock.patch.dict(os.environ, {"MIXTRAIN_HOME": cli.env["MIXTRAIN_HOME"]}):
        return WorkflowRegistry(load_settings())


def gone(pid: int) -> bool:
    from mixtrain.workflows.procs import start_time

    return start_time(pid) is None  # no such process, or a zombie (dead, not yet reaped)
