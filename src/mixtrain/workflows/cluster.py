"""Runs on a Ray cluster (team mode): one Ray job per run, through the Ray Jobs API.

With ``MIXTRAIN_RAY_ADDRESS`` (``http://HEAD:8265``) set, ``runner.start`` records the run as usual and
submits ``<python> -m mixtrain.workflows.rayjob RUN_ID`` as a job whose ``submission_id`` carries the run
id. The job is the run's supervisor on the cluster (log, redaction, timeout, worker, result: the same
code as a local run). The run's ``placement`` column says where it runs, so every home sharing the
database asks the cluster — not ``/proc`` — whether it is alive, for its log, and to stop it.

The job's ``runtime_env`` carries only where the stores are (``MIXTRAIN_HOME``, the database and catalog
URLs with any password removed, the warehouse...): the Jobs API shows ``runtime_env`` and the entrypoint
to anyone who can read the dashboard. Secrets never go there: the job reads them from the secret store by
its run id, as a local supervisor does. A database password reaches the cluster's nodes the way libpq
takes it (``PGPASSWORD`` / ``~/.pgpass`` in the nodes' environment), S3 keys as every S3 tool takes them.

We speak the Jobs API's REST form (what Ray's own ``JobSubmissionClient`` wraps) with the standard
library: the CLI stays quick (``import ray.job_submission`` costs ~1 s) and needs no Ray on the laptop.
Tried and dropped: Ray's log-tail websocket for ``logs -f`` — polling the log endpoint needs no extra
client library and a run log is small next to the poll interval.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

from mixtrain.errors import InvalidInput, MixtrainError
from mixtrain.settings import KEYS, Settings

BACKEND = "ray"
ENTRY_MODULE = "mixtrain.workflows.rayjob"
TIMEOUT = 30.0  # seconds per Jobs API request
SUBMIT_PATIENCE = 60.0  # seconds a submission waits for a just-started head's job agent
RAY_PREAMBLE = ("Runtime env is setting up", "Running entrypoint for job ")
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+\s+INFO job_manager\.py")  # Ray's own timestamped lines
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class JobState:
    """A job as the cluster reports it; ``status`` is ``"GONE"`` when the cluster no longer knows the job."""

    status: str
    message: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL or self.status == "GONE"


def is_ray(placement: dict | None) -> bool:
    return bool(placement) and (placement or {}).get("backend") == BACKEND


def check_address(address: str) -> str:
    """``http(s)://HOST:PORT`` (the dashboard / Jobs API), without a trailing slash."""
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"MIXTRAIN_RAY_ADDRESS {address!r} is not an http(s) address",
            "set it to the Ray dashboard / Jobs API address, e.g. http://HEAD:8265",
        )
    return address.rstrip("/")


def submission_id(run) -> str:
    """Unique per submission (two databases may share a cluster) and names the run: mixtrain-<workflow>-<number>-run<id>-<rand>."""
    return f"mixtrain-{run['workflow']}-{run['number']}-run{run['id']}-{uuid.uuid4().hex[:6]}"


def job_env(settings: Settings, num_nodes: int) -> dict[str, str]:
    """Where the job finds the stores: no secret, no password (the Jobs API shows this to every dashboard reader)."""
    env = {"MIXTRAIN_HOME": str(settings.home), "MIXTRAIN_NUM_NODES": str(num_nodes), "PYTHONUNBUFFERED": "1"}
    for key in KEYS:
        value = getattr(settings, key, "")
        if key == "ray_address" or not value:
            continue
        env[f"MIXTRAIN_{key.upper()}"] = strip_password(str(value))
    return env


def strip_password(url: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user@host`` (the nodes supply the password, e.g. PGPASSWORD)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1@", url)


def placement(settings: Settings, run, num_nodes: int = 1) -> dict:
    """Where the run will run, recorded on it before the job is submitted (no window without it)."""
    address = check_address(settings.ray_address)
    return {"backend": BACKEND, "address": address, "job": submission_id(run), "num_nodes": num_nodes}


def submit(settings: Settings, run, where: dict) -> None:
    """Submit the run as the Ray job ``where`` names."""
    address, sid, num_nodes = where["address"], where["job"], where["num_nodes"]
    # An absolute interpreter: a bare `python` is whatever is on PATH where `ray start` ran.
    entrypoint = f"exec {sys.executable} -m {ENTRY_MODULE} {int(run['id'])}"
    body = {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": {"env_vars": job_env(settings, num_nodes)},
        "metadata": {"mixtrain_run_id": str(run["id"]), "workflow": run["workflow"], "run": str(run["number"])},
    }
    deadline = time.monotonic() + SUBMIT_PATIENCE
    while True:
        try:
            _request(address, "POST", "/api/jobs/", body)
            return
        except MixtrainError as exc:
            # A head that just started has no job agent yet; Ray answers 500 "please try again later".
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def state(placement: dict) -> JobState | None:
    """The job's status and message; None when the cluster cannot be asked right now (nothing is concluded then)."""
    try:
        info = _request(placement["address"], "GET", f"/api/jobs/{_q(placement['job'])}")
    except JobGone:
        return JobState("GONE")
    except ClusterUnreachable:
        return None
    return JobState(str(info.get("status", "")), str(info.get("message") or ""))


def info(placement: dict) -> dict:
    """The job as the Jobs API shows it to anyone (entrypoint, runtime_env, metadata, status...)."""
    return _request(placement["address"], "GET", f"/api/jobs/{_q(placement['job'])}")


def logs(placement: dict) -> bytes:
    """The job's output (the run log, relayed by the job) without Ray's own preamble lines."""
    text = _request(placement["address"], "GET", f"/api/jobs/{_q(placement['job'])}/logs").get("logs", "")
    return strip_preamble(text).encode()


def strip_preamble(text: str) -> str:
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (lines[i].startswith(RAY_PREAMBLE) or RAY_LOG_LINE.match(lines[i])):
        i += 1
    return "".join(lines[i:])


def stop(placement: dict) -> None:
    """Ask Ray to stop the job (SIGTERM to its processes, SIGKILL after a few seconds); a gone job is stopped."""
    try:
        _request(placement["address"], "POST", f"/api/jobs/{_q(placement['job'])}/stop")
    except JobGone:
        pass


def reason(placement: dict, job: JobState) -> str:
    """Why a run whose job ended (or vanished) without the run reporting a result failed — Ray's own words."""
    where = f"Ray job {placement['job']} at {placement['address']}"
    if job.status == "GONE":
        return f"its {where} is gone from the cluster (the cluster restarted or the job was deleted)"
    if job.status == "STOPPED":
        return f"its {where} was stopped outside mixtrain: {job.message or 'no message'}"
    if job.status == "FAILED":
        return f"its {where} failed: {job.message or 'no message'}"
    return f"its {where} ended ({job.status}) without the run reporting a result: {job.message or 'no message'}"


def follow(placement: dict, out, is_over, poll: float = 0.5, linger: float = 30.0) -> None:
    """Stream the job's log to ``out`` until ``is_over()`` says the run ended and the job has ended too (its last lines are in)."""
    pos, over_since = 0, None
    while True:
        done = False
        if is_over():
            over_since = over_since or time.monotonic()
            job = state(placement)
            done = job is None or job.is_terminal or time.monotonic() - over_since > linger
        try:
            text = logs(placement)
        except (ClusterUnreachable, JobGone):
            text = b""
        if len(text) > pos:
            out.write(text[pos:])
            out.flush()
            pos = len(text)
        if done:
            return
        time.sleep(poll)


class ClusterUnreachable(MixtrainError):
    pass


class JobGone(MixtrainError):
    pass


def _q(sid: str) -> str:
    return urllib.parse.quote(sid, safe="")


def _request(address: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(address + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip().splitlines()
        if exc.code == 404:
            raise JobGone(f"the Ray cluster at {address} has no job {path.split('/')[3]}") from None
        raise MixtrainError(
            f"the Ray Jobs API at {address} refused {method} {path}: HTTP {exc.code} {detail[-1][:300] if detail else ''}",
            "check the cluster's dashboard log",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {address}: {why}",
            "start the cluster or fix MIXTRAIN_RAY_ADDRESS (http://HEAD:8265); unset it to run on this machine",
        ) from None
    return json.loads(raw) if raw.strip() else {}
