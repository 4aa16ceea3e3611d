"""Independent slow steps of a session fixture (trainings, model loads), two at a time.

The suite runs on 2 cores and pytest itself keeps one busy at a time: two child processes at once nearly
halve such a fixture's wall time. Each step is a child process (the real CLI), so threads only wait.
``MIXTRAIN_TEST_WORKERS=1`` runs them one after the other (to read one step's own cost).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
WORKERS = max(1, int(os.environ.get("MIXTRAIN_TEST_WORKERS", "2")))


def run_all(calls: list[Callable[[], T]], workers: int | None = None) -> list[T]:
    """Call every zero-argument ``calls`` (``workers`` at a time); their results in order. Raises the first error.

    In the background thread of harness/prefetch.py, each call takes a slot (``prefetch.slot``): one at a time
    while pytest runs a test on the other core, two at a time while a test waits for the background.
    """
    from harness import prefetch

    if prefetch.in_background() and WORKERS > 1 and len(calls) > 1:

        def slotted(call: Callable[[], T]) -> T:
            with prefetch.slot():
                return call()

        calls = [lambda c=c: slotted(c) for c in calls]
    workers = workers or WORKERS
    if workers <= 1 or len(calls) <= 1:
        return [c() for c in calls]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def run_number(stdout: str) -> int:
    """The run number an attached `workflow run` printed ("▶ run #N of workflow …"): the last run may be another's."""
    found = re.search(r"▶ run #(\d+) of workflow", stdout)
    assert found, f"no run number in the output:\n{stdout[-3000:]}"
    return int(found.group(1))
