"""Evals run as runs of one built-in workflow, so they get the workflow engine's tracking for free:
detached start, `-d`, Ctrl-C detaches, logs, cancel, timeout and SIGKILL detection."""

from __future__ import annotations

from pathlib import Path

from mixtrain.errors import AlreadyExists, Conflict, NotFound
from mixtrain.records import Run
from mixtrain.settings import Settings

WORKFLOW = "mixtrain-eval"
ENTRYPOINT = "MixtrainEval"
FLOW_FILE = Path(__file__).with_name("eval_flow.py")


def ensure_workflow(settings: Settings) -> None:
    """Register the built-in eval workflow once per home (a user workflow of that name is refused)."""
    from mixtrain.workflows.registry import WorkflowRegistry

    reg = WorkflowRegistry(settings)
    try:
        version = reg.latest_version(WORKFLOW)
    except NotFound:
        try:
            reg.create(
                WORKFLOW, [FLOW_FILE], description="built-in: runs `mixtrain eval create` jobs", entrypoint=ENTRYPOINT
            )
        except AlreadyExists:  # a concurrent `eval create` registered it first
            pass
        version = reg.latest_version(WORKFLOW)
    if version["entrypoint"] != ENTRYPOINT:
        raise Conflict(
            f"a workflow named {WORKFLOW!r} exists that is not mixtrain's built-in eval workflow",
            f"rename it: evals need that name (`mixtrain workflow delete {WORKFLOW}`)",
        )


def start(settings: Settings, eval_name: str, *, fork: bool = False) -> Run:
    from mixtrain.workflows import runner

    ensure_workflow(settings)
    return runner.start(settings, WORKFLOW, {"eval_name": eval_name}, fork=fork)


def follow(settings: Settings, number: int, out=None) -> Run:
    from mixtrain.workflows import runner

    return runner.follow(settings, WORKFLOW, number, out)


def wait(settings: Settings, number: int) -> Run:
    from mixtrain.workflows import runner

    return runner.wait(settings, WORKFLOW, number)


def cancel(settings: Settings, number: int) -> Run:
    from mixtrain.workflows import runner

    return runner.cancel(settings, WORKFLOW, number)
