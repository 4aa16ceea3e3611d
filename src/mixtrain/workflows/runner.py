"""Start, follow and cancel runs. The run itself lives in a detached supervisor process.

``start`` validates inputs against the stored spec (nothing starts on bad input), inserts the run,
and spawns ``python -m mixtrain.workflows.supervisor RUN_ID`` in its own session: it survives the
CLI, Ctrl-C in the terminal does not reach it, and ``cancel`` can signal its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mixtrain.errors import Conflict, InvalidInput, MixtrainError
from mixtrain.records import Run, RunStatus
from mixtrain.settings import Settings
from mixtrain.workflows import procs
from mixtrain.workflows.registry import WorkflowRegistry
from mixtrain.workflows.runfolder import RunFolder
from mixtrain.workflows.spec import coerce, load_model, validate_model

POLL = 0.1


def validate_inputs(spec: dict, given: dict, *, from_text: bool = False) -> dict:
    """Check and type ``given`` against the spec; return the full input dict (defaults filled).

    The same checks the run applies, in the caller's process and before anything is created: types,
    choices and bounds from the spec and, when the workflow declares its inputs as a pydantic model
    from an installed module, that model's full validation (its custom validators included).
    """
    by_name = {i["name"]: i for i in spec["inputs"]}
    unknown = [k for k in given if k not in by_name]
    if unknown:
        raise InvalidInput(
            f"unknown input{'s' if len(unknown) > 1 else ''} {', '.join('--' + k for k in unknown)}",
            f"available: {', '.join('--' + n for n in by_name) or '(none)'}",
        )
    model = _schema(spec)
    out, missing = {}, []
    for name, inp in by_name.items():
        if name in given:
            value = given[name]
            if model is not None and inp.get("style") == "model" and inp["type"] not in ("list", "dict"):
                out[name] = value  # the model types and checks it below, with the run's own code
            else:
                out[name] = coerce(inp, value, from_text=from_text and isinstance(value, str))
        elif inp["required"]:
            missing.append("--" + name)
        else:
            out[name] = inp["default"]
    if missing:
        raise InvalidInput(
            f"missing required input{'s' if len(missing) > 1 else ''} {', '.join(missing)}", "pass a value for each"
        )
    if model is not None:
        fields = [i["name"] for i in spec["inputs"] if i.get("style") == "model"]
        checked = validate_model(model, {k: out[k] for k in fields}).model_dump(mode="json")
        out.update({k: checked[k] for k in fields})
    return out


def _schema(spec: dict):
    """The workflow's input model, when it names one importable here; else None (spec-level checks only)."""
    if not spec.get("schema"):
        return None
    try:
        return load_model(spec["schema"])
    except (ImportError, AttributeError):
        return None


def start(
    settings: Settings, name: str, inputs: dict, *, from_text: bool = False, fork: bool = False, num_nodes: int = 1
) -> Run:
    """Create the run and launch its supervisor, detached in its own session — or, with a Ray address, as a Ray job.

    ``fork=True`` (the CLI) forks the supervisor from this process, reusing its imports, which saves a
    Python start-up and the SQLAlchemy import (~0.25 s). The Python API spawns a fresh interpreter:
    forking a user's (possibly threaded) process is not safe. ``num_nodes`` > 1 (a Ray cluster only)
    gangs that many nodes for the run's training (``vlm.gang``).
    """
    check_num_nodes(settings, num_nodes)
    reg = WorkflowRegistry(settings)
    version = reg.latest_version(name)
    full = validate_inputs(version["spec"], inputs, from_text=from_text)
    run = reg.new_run(name, version["version"], full)
    return _launch(settings, reg, run, fork, num_nodes)


def check_num_nodes(settings: Settings, num_nodes: int) -> None:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise InvalidInput(f"--num_nodes must be a whole number ≥ 1, got {num_nodes!r}", "pass e.g. --num_nodes 2")
    if num_nodes > 1 and not settings.ray_address:
        raise InvalidInput(
            f"--num_nodes {num_nodes} needs a Ray cluster, and MIXTRAIN_RAY_ADDRESS is not set",
            "set MIXTRAIN_RAY_ADDRESS=http://HEAD:8265 (env or config.toml), or drop --num_nodes to train on this machine",
        )
    if settings.ray_address:
        from mixtrain.workflows.cluster import check_address

        check_address(settings.ray_address)


def resume(settings: Settings, name: str, number: int, *, fork: bool = False) -> Run:
    """A new run of the same workflow version with the same inputs, continuing ``number`` from its checkpoint."""
    from mixtrain.workflows import resume as resuming
    from mixtrain.workflows.metrics import MetricsStore

    reg = WorkflowRegistry(settings)
    old = _current(reg, name, number)
    origin = resuming.plan(old, settings)
    num_nodes = (old.placement or {}).get("num_nodes", 1)
    check_num_nodes(settings, num_nodes)
    run = reg.new_run(name, old["version"], old["inputs"], resumed_from=origin, resumes=old)
    MetricsStore(settings.database_url).copy(old["id"], run["id"], up_to_step=origin["step"])
    return _launch(settings, reg, run, fork, num_nodes)


def _launch(settings: Settings, reg: WorkflowRegistry, run: Run, fork: bool, num_nodes: int = 1) -> Run:
    if settings.ray_address:
        return _submit(settings, reg, run, num_nodes)
    err_log = RunFolder(run["run_dir"]).supervisor_err
    if fork:
        pid = _fork_supervisor(settings, run["id"], err_log)
    else:
        with open(err_log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mixtrain.workflows.supervisor", str(run["id"])],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=dict(os.environ, MIXTRAIN_HOME=str(settings.home)),
                close_fds=True,
            )
        _reap_later(proc)
        pid = proc.pid
    reg.record_launcher(run["id"], pid, procs.identity(pid))
    return reg.run_by_id(run["id"])


def _submit(settings: Settings, reg: WorkflowRegistry, run: Run, num_nodes: int) -> Run:
    """The run as a Ray job (``workflows.cluster``): where it runs is recorded before it is submitted."""
    from mixtrain.workflows import cluster

    where = cluster.placement(settings, run, num_nodes)  # the address was checked before the run was made
    reg.record_placement(run.id, where)
    try:
        cluster.submit(settings, run, where)
    except MixtrainError as exc:
        reg.set_status(run.id, RunStatus.FAILED, error=f"could not submit the run to the Ray cluster: {exc}"[:4000])
        raise
    return reg.run_by_id(run.id)


def _fork_supervisor(settings: Settings, run_id: int, err_log: Path) -> int:
    """Double fork + setsid: the supervisor is re-parented to init and leads its own session and process group."""
    from mixtrain.metadata.db import get_engine

    get_engine(settings.database_url).dispose()  # no DB connection may cross the fork
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        code = 1
        try:
            os.close(read_fd)
            second = os.fork()
            if second:
                os.write(write_fd, str(second).encode())
                os._exit(0)
            os.close(write_fd)
            os.setsid()  # new session and process group, led by the supervisor (cancel signals the group)
            log_fd = os.open(err_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null_fd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null_fd, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.environ["MIXTRAIN_HOME"] = str(settings.home)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            from mixtrain.workflows.supervisor import main

            code = main(run_id)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        pid = int(fh.read() or 0)
    os.waitpid(first, 0)
    if not pid:
        raise MixtrainError(
            "could not start the run's supervisor process", "check the machine's process limits and try again"
        )
    return pid


def _reap_later(proc: subprocess.Popen) -> None:
    """Keep a handle so the zombie is reaped when this (long-lived) process polls; harmless otherwise."""
    _children.append(proc)


_children: list[subprocess.Popen] = []


def _reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def _stop_job(reg: WorkflowRegistry, run: Run, grace: float) -> Run:
    """Cancel a Ray run: Ray signals the job's processes (SIGTERM, then SIGKILL); wait until the job has ended."""
    from mixtrain.workflows import cluster

    where = run.placement or {}
    cluster.stop(where)
    deadline = time.time() + grace
    while time.time() < deadline:
        job = cluster.state(where)
        if job is None or job.is_terminal:
            break
        time.sleep(POLL * 2)
    return reg.run_by_id(run.id)


def _current(reg: WorkflowRegistry, name: str, number: int) -> Run:
    """The run after the explicit liveness step: a run whose processes died reads as failed."""
    run = reg.run(name, number)
    if run.status.is_active and reg.reconcile(run.id):
        run = reg.run_by_id(run.id)
    return run


def follow(settings: Settings, name: str, number: int, out=None, on_tick=None) -> Run:
    """Stream the run's log to ``out`` until the run ends; returns the final run record.

    ``out`` needs ``write(bytes)`` and ``flush()``; ``on_tick(run)``, if given, is called on every poll
    (the attached CLI refreshes its progress display there).
    """
    out = out or sys.stdout.buffer
    reg = WorkflowRegistry(settings)
    run = _current(reg, name, number)
    if run.placement:
        return _follow_job(reg, run, out, on_tick)
    log_path = Path(run.log_path)
    pos = 0
    started = time.monotonic()
    while True:
        _reap()
        if log_path.exists():
            with open(log_path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            if chunk:
                out.write(chunk)
                out.flush()
                pos += len(chunk)
        if run.status.is_terminal:
            # Give the supervisor a moment to write its closing line (no need to wait for its exit).
            end = time.time() + 3
            while time.time() < end and procs.alive(run["pid"], run["pid_start"]) and not _closed(log_path, number):
                _reap()
                time.sleep(0.01)
            with open(log_path, "rb") if log_path.exists() else open(os.devnull, "rb") as fh:
                fh.seek(pos)
                rest = fh.read()
            if rest:
                out.write(rest)
                out.flush()
            return run
        if on_tick is not None:
            on_tick(run)
        time.sleep(_poll_interval(started))
        run = _current(reg, name, number)


def _follow_job(reg: WorkflowRegistry, run: Run, out, on_tick) -> Run:
    """A Ray run's log is its job's log, from wherever this runs."""
    from mixtrain.workflows import cluster

    latest = run

    def is_over() -> bool:
        nonlocal latest
        latest = _current(reg, run.workflow, run.number)
        if on_tick is not None and not latest.status.is_terminal:
            on_tick(latest)
        return latest.status.is_terminal

    cluster.follow(run.placement or {}, out, is_over)
    return latest


def _poll_interval(started: float) -> float:
    """Poll briskly while a run is young (short runs end sooner), then settle to POLL."""
    return 0.02 if time.monotonic() - started < 5 else POLL


def _closed(log_path: Path, number: int) -> bool:
    """Whether the supervisor has written the run's closing line (``■ run #N <status>``)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 512))
            return f"\u25a0 run #{number} ".encode() in fh.read()
    except OSError:
        return False


def wait(settings: Settings, name: str, number: int) -> Run:
    reg = WorkflowRegistry(settings)
    while True:
        _reap()
        run = _current(reg, name, number)
        if run.status.is_terminal:
            return run
        time.sleep(POLL)


def cancel(settings: Settings, name: str, number: int, grace: float = 10.0) -> Run:
    reg = WorkflowRegistry(settings)
    run = _current(reg, name, number)
    if run.status.is_terminal:
        raise Conflict(
            f"run #{number} of {name!r} is already {run['status']}", "only pending or running runs can be cancelled"
        )
    reg.set_status(run["id"], RunStatus.CANCELLED, error="cancelled by user")
    if run.placement:
        return _stop_job(reg, run, grace)

    # The supervisor leads the run's process group; the group outlives it while any member lives.
    def anything_alive():
        return procs.alive(run["pid"], run["pid_start"]) or procs.alive(run["worker_pid"], run["worker_start"])

    if run["pid"] and anything_alive():
        procs.kill_group(run["pid"], signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline and anything_alive():
            _reap()
            time.sleep(POLL)
            run = reg.run_by_id(run["id"])
        procs.kill_group(run["pid"], signal.SIGKILL)
    return reg.run_by_id(run["id"])
