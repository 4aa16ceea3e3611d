"""Inside a run: import the user's workflow, set its inputs, call setup → run → cleanup, report.

Runs in the process forked by the supervisor; stdout/stderr go to the run's log relay, never
through the supervisor, and the worker records its own result: it finishes even if the supervisor dies. A user
exception prints the user's traceback (their bug, their log) and fails the run with its message.
"""

from __future__ import annotations

import inspect
import json
import os
import traceback
from collections.abc import Mapping
from pathlib import Path

from mixtrain.errors import MixtrainError
from mixtrain.metadata.db import now
from mixtrain.workflows import diskspace
from mixtrain.workflows.context import RunContext, enter
from mixtrain.workflows.flow import MixParam
from mixtrain.workflows.redact import Redactor
from mixtrain.workflows.registry import WorkflowRegistry
from mixtrain.workflows.runfolder import RunFolder
from mixtrain.workflows.spec import input_model, to_jsonable, validate_model


def execute(settings, run: Mapping, version: dict) -> int:
    reg = WorkflowRegistry(settings)
    redactor = Redactor.from_env()
    folder = RunFolder(run["run_dir"])
    try:
        from mixtrain.workflows.loader import find_flow, load_module

        source = Path(version["source_dir"]) / version["main_file"]
        if not source.is_file():  # the platform's copy is gone: not the workflow's bug, no traceback
            raise MixtrainError(
                f"the stored file of workflow {run['workflow']!r} version {version['version']} is missing: {source}",
                f"register it again with `mixtrain workflow update {run['workflow']} FILE`",
            )
        module = load_module(source)
        cls = find_flow(module, version["entrypoint"])
        ctx = RunContext(workflow=run["workflow"], number=run["number"], id=run["id"], run_dir=Path(run["run_dir"]))
        result = call_flow(cls, version["spec"], run["inputs"], context=ctx)
        output = json.loads(redactor.text(json.dumps(to_jsonable(result))))
        _write_output(folder.output, output)
        diskspace.with_reserve(folder, lambda: reg.set_status(run["id"], "completed", output=output, finished_at=now()))
    except BaseException as exc:
        if diskspace.disk_full(exc):  # the workflow's write or ours: say so, where and how much
            reason = diskspace.reason(exc, folder)
            print(f"Error: {reason}", flush=True)
        elif isinstance(exc, MixtrainError):  # an expected, explained failure: the message says it all
            print(f"Error: {redactor.text(str(exc))}", flush=True)
            reason = str(exc)
        else:  # the workflow's own bug: its traceback belongs in its log
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}"
        diskspace.with_reserve(folder, lambda: reg.set_status(run["id"], "failed", error=redactor.text(reason)[:4000]))
        return 1
    return 0


def _write_output(path: Path, output) -> None:
    """Write output.json whole or not at all (a full disk must not leave half a file)."""
    from mixtrain.errors import StorageError

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(output, indent=2)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError.from_os_error(exc, path, "the run's output", needed=len(text.encode())) from None


def call_flow(cls, spec: dict, inputs: dict, context: RunContext | None = None):
    """Instantiate and run a MixFlow the way the platform always does (also used by benchmarks).

    A workflow declaring ``run(self, params: Model)`` gets the validated model instance; the others
    get their ``run()`` arguments and ``mixparam`` attributes.
    """
    flow = cls()
    flow.run_context = context
    enter(context)
    run_params = {i["name"] for i in spec["inputs"] if i.get("style") == "run"}
    model_params = {i["name"] for i in spec["inputs"] if i.get("style") == "model"}
    inputs = _enum_members(cls, inputs)
    for name, value in inputs.items():
        if name not in run_params | model_params or isinstance(getattr(cls, name, None), MixParam):
            setattr(flow, name, value)
    model = input_model(cls) if model_params else None
    try:
        if _takes_argument(flow.setup):
            flow.setup(dict(inputs))
        else:
            flow.setup()
        if model is not None:
            return flow.run(validate_model(model, {k: v for k, v in inputs.items() if k in model_params}))
        return flow.run(**{k: v for k, v in inputs.items() if k in run_params})
    finally:
        flow.cleanup()


def _enum_members(cls, inputs: dict) -> dict:
    """The spec stores an Enum input by its value; hand the workflow the member its annotation names."""
    import enum
    import types
    import typing

    hints: dict = {}
    for obj in (cls, cls.run):
        try:
            hints.update(typing.get_type_hints(obj))
        except Exception:
            pass
    out = dict(inputs)
    for name, value in inputs.items():
        hint = hints.get(name)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else None
        if isinstance(hint, type) and issubclass(hint, enum.Enum) and value is not None and not isinstance(value, hint):
            out[name] = hint(value)
    return out


def _takes_argument(method) -> bool:
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) >= 1
