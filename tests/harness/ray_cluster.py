"""A real 2-node Ray cluster on loopback for team-mode tests: started once per session, torn down by process group.

``ray.cluster_utils.Cluster`` runs a head node (GCS, dashboard + Jobs API, raylet) and a second raylet on
this machine — two Ray nodes, each with its own worker-port range, as far apart as Ray can tell. It runs
in a child process of its own session: every Ray process (GCS, raylets, dashboard, agents, workers, job
drivers) is in that process group, so teardown is one ``killpg`` — never ``ray stop``, which kills every
Ray process on the machine by name (other sessions' clusters included).

Run as a script (``python ray_cluster.py serve DIR``) it is that child: it starts the cluster, prints one
JSON line with the addresses and waits until its stdin closes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
NODES = 2
CPUS_PER_NODE = 2  # logical: one Ray Train worker per node plus room for the job's own driver
PORTS_PER_NODE = 40  # worker-port range per node (Ray's default 10002-19999 collides with other servers)
# A Unix socket path holds 107 bytes; under RAY_TMPDIR Ray adds up to ~75: "/ray/session_<date>_<time>_<us>_<pid>"
# (~42) + "/sockets/" + its longest dashboard module socket ("dash_UsageStatsHead", 19). Measured: a 39-character
# folder broke "dash_MetricsHead" (the head never started).
SOCKET_PATH_MAX = 30


@dataclass
class RayCluster:
    """What a test needs: the Jobs API address (``MIXTRAIN_RAY_ADDRESS``), the GCS address, the node ids."""

    dashboard_url: str
    gcs_address: str
    node_ids: list[str]
    temp_dir: Path
    proc: subprocess.Popen = field(repr=False)

    def stop(self) -> None:
        """Close the child's stdin (it shuts the cluster down), then end whatever is left of its process group."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def cluster_env(temp_dir: Path) -> dict[str, str]:
    """The cluster's environment: this one, minus any mixtrain setting or distributed variable, with the code under test first on the path.

    The nodes hold the session S3 server's keys, the way a real cluster's nodes get theirs (environment or
    instance role): a run's Ray job never carries them (its ``runtime_env`` is shown to dashboard readers)."""
    from harness.s3 import ADMIN
    from mixtrain.hardware import DIST_VARS

    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXTRAIN_") and k not in DIST_VARS}
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=str(temp_dir),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        AWS_ACCESS_KEY_ID=ADMIN[0],
        AWS_SECRET_ACCESS_KEY=ADMIN[1],
    )
    return env


def start(temp_dir: Path, timeout: float = 300) -> RayCluster:
    """Start the 2-node cluster in its own session; returns once both nodes are up."""
    temp_dir = Path(temp_dir)
    if len(str(temp_dir)) > SOCKET_PATH_MAX:  # Ray's sockets live under it: keep the path short
        temp_dir = Path(tempfile.mkdtemp(prefix="mixtrain-ray-"))
    (temp_dir / "ray").mkdir(parents=True, exist_ok=True)  # RAY_TMPDIR's ray/ subfolder must exist
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "serve", str(temp_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(temp_dir / "cluster.err", "ab"),  # the child keeps it open
        env=cluster_env(temp_dir),
        start_new_session=True,
        cwd=temp_dir,
    )
    assert proc.stdout is not None
    import select

    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            break
    if not line:
        cluster = RayCluster("", "", [], temp_dir, proc)
        cluster.stop()
        err = (temp_dir / "cluster.err").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the Ray test cluster did not start within {timeout}s:\n{err}")
    info = json.loads(line)
    return RayCluster(info["dashboard_url"], info["gcs_address"], info["node_ids"], temp_dir, proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_range(n: int, taken: set[int]) -> tuple[int, int]:
    """A block of ``n`` ports nobody listens on now (chosen at random in the unprivileged, non-ephemeral range)."""
    for _ in range(200):
        lo = random.randrange(20000, 32000 - n)
        ports = range(lo, lo + n)
        if taken.intersection(ports):
            continue
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        taken.update(ports)
        return lo, lo + n - 1
    raise RuntimeError(f"no free block of {n} ports")


def _agent_ports() -> dict[str, int]:
    """Each node's agent ports, free and explicit: with Ray's defaults (52365 …) the second node's agent, or
    any other Ray on the machine, takes the head's port and the head refuses jobs ("No available agent")."""
    return {
        "dashboard_agent_listen_port": _free_port(),
        "metrics_agent_port": _free_port(),
        "metrics_export_port": _free_port(),
        "runtime_env_agent_port": _free_port(),
    }


def _serve(temp_dir: str) -> None:
    from ray.cluster_utils import Cluster

    taken: set[int] = set()
    dashboard = _free_port()
    common = {"num_cpus": CPUS_PER_NODE, "num_gpus": 0, "node_ip_address": "127.0.0.1", "temp_dir": f"{temp_dir}/ray"}
    lo, hi = _free_range(PORTS_PER_NODE, taken)
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            **common,
            "gcs_server_port": _free_port(),
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard,
            "min_worker_port": lo,
            "max_worker_port": hi,
            **_agent_ports(),
        },
    )
    nodes = [cluster.head_node]
    for _ in range(NODES - 1):
        lo, hi = _free_range(PORTS_PER_NODE, taken)
        nodes.append(cluster.add_node(**common, **_agent_ports(), min_worker_port=lo, max_worker_port=hi))
    cluster.wait_for_nodes()
    url = f"http://127.0.0.1:{dashboard}"
    _wait_for_jobs_api(url)
    info = {"dashboard_url": url, "gcs_address": cluster.address, "node_ids": [n.node_id for n in nodes]}
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the test session closes our stdin (or dies)
    cluster.shutdown()


def _wait_for_jobs_api(url: str, timeout: float = 180) -> None:
    """Ready means a job runs: the head's job agent registers well after the nodes are up on a loaded machine."""
    import urllib.request

    end = time.monotonic() + timeout
    body = json.dumps({"entrypoint": "true", "submission_id": f"warm-up-{os.getpid()}"}).encode()
    while True:
        try:
            req = urllib.request.Request(
                f"{url}/api/jobs/", data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(req, timeout=10).close()
            break
        except OSError:  # connection refused, or HTTP 500 "No available agent to submit job"
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"the Ray Jobs API at {url} accepted no job within {timeout}s")
        time.sleep(0.5)
    while time.monotonic() < end:
        with urllib.request.urlopen(f"{url}/api/jobs/warm-up-{os.getpid()}", timeout=10) as resp:
            if json.load(resp).get("status") in ("SUCCEEDED", "FAILED", "STOPPED"):
                return
        time.sleep(0.2)
    raise RuntimeError(f"the Ray test cluster's warm-up job did not finish within {timeout}s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _serve(sys.argv[2])
