"""A run's processes are identified by host + pid + start time."""

from __future__ import annotations

import os

from mixtrain.workflows import procs


def test_identity_of_a_live_process():
    ident = procs.identity(os.getpid())
    assert ident and ident.startswith(procs.HOST + ":")
    assert procs.alive(os.getpid(), ident)


def test_reused_pid_is_not_the_recorded_process():
    assert not procs.alive(os.getpid(), f"{procs.HOST}:1")
    assert not procs.alive(None, None)


def test_another_machines_process_is_not_judged_here():
    # With a shared metadata DB, this machine cannot see the other's /proc: never fail its runs.
    assert procs.alive(4_000_000, "0000dead:12345")
