"""Helpers shared by the workflow CLI tests: read the run table in-process and wait for conditions."""

from __future__ import annotations

import os
import time


def registry(cli):
    """The run table read in this process (cheaper than a CLI call per poll)."""
    from unittest import mock

    from mixtrain.settings import load_settings
    from mixtrain.workflows.registry import WorkflowRegistry

    with mock.patch.dict(os.environ, {"MIXTRAIN_HOME": cli.env["MIXTRAIN_HOME"]}):
        return WorkflowRegistry(load_settings())


def wait_for(predicate, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    from mixtrain.workflows.procs import start_time

    return start_time(pid) is None  # no such process, or a zombie (dead, not yet reaped)
