"""Session fixtures whose work starts early, in one background thread, while other tests run.

The suite runs on 2 cores and pytest runs one test at a time: while the CLI tests (which come first) keep
one core busy, the other is idle. The slow session fixtures — building the tiny models, the shared family
trainings, the family gate — are registered here as *jobs* named after their fixture. Once collection is
done, ``start`` runs (in a daemon thread, in the order the tests first need them) every job that a selected test needs,
directly or through another job; the fixture itself calls ``result(name)``, which returns the job's value —
waiting for the background thread if it is on it, or doing the work in the foreground if nothing started it.
Each job runs once per session either way, and a job's failure is raised by its fixture (the tests that need
it fail, with the job's own traceback). Nothing is asserted differently: only *when* the work happens moves.

``MIXTRAIN_TEST_PREFETCH=0`` turns the background off (every job then runs when its fixture is first used).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cli import Mix, cli_env


@dataclass
class _Job:
    fn: Callable[[Any], Any]
    needs: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    value: Any = None
    error: BaseException | None = None


_JOBS: dict[str, _Job] = {}
_STATE: dict[str, Any] = {"factory": None, "thread": None, "stop": False, "environ": None, "waiting": 0, "active": 0}
THREAD = "mixtrain-test-prefetch"


def job(name: str, needs: tuple[str, ...] = ()):
    """Register ``fn(tmp_path_factory)`` as the work of fixture ``name`` (``needs``: jobs it uses)."""

    def register(fn):
        _JOBS[name] = _Job(fn, needs)
        return fn

    return register


_SLOTS = threading.Condition()


def _waiting(delta: int) -> None:
    with _SLOTS:
        _STATE["waiting"] += delta
        _SLOTS.notify_all()


@contextmanager
def slot() -> Iterator[None]:
    """A child-process slot for the background thread: one while pytest runs tests, two while a test waits
    for a job (then the core pytest would use is idle)."""
    with _SLOTS:
        while _STATE["active"] >= (2 if _STATE["waiting"] else 1):
            _SLOTS.wait(0.5)
        _STATE["active"] += 1
    try:
        yield
    finally:
        with _SLOTS:
            _STATE["active"] -= 1
            _SLOTS.notify_all()


def result(name: str, factory=None):
    """The value of job ``name``: computed once per session, here or by the background thread."""
    j = _JOBS[name]
    if not j.lock.acquire(blocking=False):  # the background thread is on it: wait (and let it use both cores)
        waits = not in_background()
        if waits:
            _waiting(+1)
        try:
            j.lock.acquire()
        finally:
            if waits:
                _waiting(-1)
    try:
        if not j.done:
            try:
                j.value = j.fn(factory or _STATE["factory"])
            except BaseException as exc:  # kept, and raised to every fixture that asks for it
                j.error = exc
            j.done = True
    finally:
        j.lock.release()
    if j.error is not None:
        raise j.error
    return j.value


def _closure(names) -> list[str]:
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order or n not in _JOBS:
            return
        for dep in _JOBS[n].needs:
            visit(dep)
        order.append(n)

    for n in names:
        visit(n)
    return order


def start(items, factory) -> list[str]:
    """Start the background thread on the jobs the collected ``items`` need; returns their names, in order."""
    _STATE["factory"] = factory
    _STATE["environ"] = dict(os.environ)
    # The session's base temp folder is made lazily by its first user: made here, before the thread starts, so the
    # thread's first mktemp and the first test's tmp_path cannot both make one (the loser's mktemp then fails with
    # "… is not a normalized and relative path").
    factory.getbasetemp()
    if os.environ.get("MIXTRAIN_TEST_PREFETCH", "1") == "0" or _STATE["thread"] is not None:
        return []
    # In the order the tests will first need them (dependencies first).
    order = _closure(n for item in items for n in getattr(item, "fixturenames", ()) if n in _JOBS)
    if not order:
        return []

    def work() -> None:
        for n in order:
            if _STATE["stop"]:  # the session is ending (e.g. -x): start nothing more
                return
            try:
                result(n)
            except BaseException:  # raised again by the fixture that asks for it
                pass

    _STATE["thread"] = threading.Thread(target=work, name=THREAD, daemon=True)
    _STATE["thread"].start()
    return order


def environ() -> dict[str, str]:
    """The environment at session start, for the jobs' child processes: a foreground test's monkeypatched
    variables (HOME, HF_HOME, WANDB_API_KEY, …) must not leak into a training that runs meanwhile."""
    return dict(_STATE["environ"] if _STATE["environ"] is not None else os.environ)


def mix(root: Path) -> Mix:
    """The CLI runner for a job's home ``root``/home, with the session-start environment (see ``environ``)."""
    home = Path(root) / "home"
    return Mix(root, home, env=cli_env(home, base=environ()))


def in_background() -> bool:
    """True in the background thread: its jobs then start one child process at a time (pytest has the other core)."""
    return threading.current_thread().name == THREAD


def join(timeout: float | None = None) -> None:
    """Session end: start no further job and wait for the current one (no child process outlives the session)."""
    _STATE["stop"] = True
    if _STATE["thread"] is not None:
        _STATE["thread"].join(timeout)
