"""Team mode (#21) side by side with the single-machine default and the raw engines, in one run.

    flock /tmp/mixtrain-train.lock .venv/bin/python benchmarks/bench_team.py [--rows 100000] [--images 300]
        [--artifact-mb 64] [--reps 3] [--steps 4] [--skip-finetune]

It starts loopback services the way the tests and the README's recipe do (scripts/pg_server.sh, SeaweedFS
``weed mini`` from tests/harness, a 2-node cluster with ``ray start --block`` on free ports) and measures:

1. datasets: ``mixtrain dataset create`` (a fresh CLI process, as a user runs it) of a text CSV and of an
   image CSV (images stored content-addressed), and a full scan to Arrow (timed inside a fresh process),
   on three stores: SQLite + local disk (the default), PostgreSQL + local disk, PostgreSQL + S3. The
   S3 / local-disk ratio compares the last two (same catalog: only the storage differs).
2. model artifacts: ``objectstore.put_dir`` of an adapter-shaped folder and a cold ``get_dir`` (fresh
   cache: download + sha256 check), against raw pyarrow ``copy_files`` both ways and a local ``copytree``.
3. runs: ``mixtrain workflow run triv -d`` until the run is ``running`` in the database — on this machine
   and as a Ray job (``MIXTRAIN_RAY_ADDRESS``) — against Ray's own ``JobSubmissionClient`` submit → RUNNING.
4. the tiny LLaVA LoRA fine-tune (same spec) on one node here vs ``--num_nodes 2`` on the Ray cluster.

A piece that is not available (not landed, or failing) is reported as "not measured: why" and the rest
still runs. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import MIXTRAIN, REPO, bench_env

sys.path.insert(0, str(REPO / "tests"))  # the test harness's service starters: the same recipe as the tests

FLOW = '''
import time

from mixtrain import MixFlow


class Triv(MixFlow):
    """Sleeps a moment (so "running" can be seen) and returns."""

    def run(self, seconds: float = 2.0):
        time.sleep(seconds)
        return seconds
'''

SCAN = """
import json, sys, time
from mixtrain.client import MixClient
c = MixClient()
t0 = time.perf_counter()
t = c.get_dataset(sys.argv[1]).scan().to_arrow()
print(json.dumps({"scan": time.perf_counter() - t0, "rows": t.num_rows}))
"""


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


class Services:
    """PostgreSQL, SeaweedFS and a 2-node Ray cluster on loopback, started as the tests start them."""

    def __init__(self, root: Path, ray: bool):
        from harness.s3 import WeedServer

        self.root = root
        pg_dir = Path(tempfile.mkdtemp(prefix="mixtrain-bench-pg-"))
        pg_dir.chmod(0o755)
        self.pg_dir = pg_dir
        proc = subprocess.run(
            ["bash", str(REPO / "scripts/pg_server.sh"), "start", str(pg_dir)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"PostgreSQL did not start: {proc.stderr[-500:]}")
        self.pg = proc.stdout.strip()
        self.weed = WeedServer(root / "weed")
        self.weed.start()
        self.ray = RayStart(root / "ray") if ray else None

    def database(self) -> str:
        """A fresh database on the server."""
        from sqlalchemy import create_engine, text

        name = "b_" + uuid.uuid4().hex[:12]
        admin = create_engine(self.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return self.pg.rsplit("/", 1)[0] + "/" + name

    def s3_env(self) -> dict[str, str]:
        return self.weed.env(self.weed.bucket())

    def stop(self) -> None:
        if self.ray is not None:
            self.ray.stop()
        self.weed.stop()
        subprocess.run(["bash", str(REPO / "scripts/pg_server.sh"), "stop", str(self.pg_dir)], capture_output=True)
        shutil.rmtree(self.pg_dir, ignore_errors=True)


class RayStart:
    """A 2-node Ray cluster started the README's way (`ray start --block`, one process group per node), with
    every port explicit and free — the agent ports too: Ray's default agent port (52365) is taken as soon as
    another Ray runs on the machine, and a head without its agent refuses jobs ("No available agent")."""

    def __init__(self, root: Path):
        from harness.s3 import free_ports

        root.mkdir(parents=True, exist_ok=True)
        ray = str(Path(sys.executable).parent / "ray")
        gcs, dash, *agent = free_ports(10)
        lo = 20000 + (os.getpid() % 200) * 200  # a worker-port block of our own per node
        common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
        nodes = [
            [ray, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
             f"--temp-dir={root}"],
            [ray, "start", f"--address=127.0.0.1:{gcs}"],
        ]  # fmt: skip
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self.procs = []
        for i, argv in enumerate(nodes):
            a = agent[i * 4 : i * 4 + 4]
            argv += [
                *common,
                f"--min-worker-port={lo + i * 100}",
                f"--max-worker-port={lo + i * 100 + 99}",
                f"--dashboard-agent-listen-port={a[0]}",
                f"--dashboard-agent-grpc-port={a[1]}",
                f"--metrics-export-port={a[2]}",
                f"--runtime-env-agent-port={a[3]}",
            ]
            log = open(root / f"node{i}.log", "ab")
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True))
            if i == 0:
                self._wait(f"http://127.0.0.1:{dash}/api/version", 1)
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        self._wait(f"{self.dashboard_url}/nodes?view=summary", 2)

    def _wait(self, url: str, nodes: int, timeout: float = 180) -> None:
        import urllib.request

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    data = json.loads(resp.read())
                alive = [
                    n for n in data.get("data", {}).get("summary", []) if n.get("raylet", {}).get("state") == "ALIVE"
                ]
                if "ray_version" in data or len(alive) >= nodes:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise SystemExit(f"the Ray cluster did not come up within {timeout:.0f} s")

    def stop(self) -> None:
        import signal

        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)  # a --block head outlives SIGTERM for a while
            except ProcessLookupError:
                pass
            p.wait(10)


def env_for(tmp: Path, store: str, svc: Services) -> dict[str, str]:
    home = tmp / f"home-{uuid.uuid4().hex[:6]}"
    env = bench_env(home)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if store in ("pg+disk", "pg+s3"):
        url = svc.database()
        env.update(MIXTRAIN_DATABASE_URL=url, MIXTRAIN_CATALOG_URL=url)
    if store == "pg+s3":
        env.update(svc.s3_env())
    return env


def run(cmd, env, cwd=None, timeout=1800) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    return time.perf_counter() - t0, proc


# -- 1. datasets ---------------------------------------------------------------------------------------
def bench_datasets(tmp: Path, svc: Services, rows: int, images: int, reps: int) -> None:
    from mixtrain.testing.colour_task import make_task

    text_csv = tmp / "text.csv"
    with text_csv.open("w") as fh:
        fh.write("prompt,response,score\n")
        for i in range(rows):
            fh.write(f"Describe picture {i},A picture of thing {i % 977} on a table,{i % 10}\n")
    task = make_task(tmp / "task", n_train=images, n_test=1, size=64)
    image_csv = Path(task["train_csv"])
    print(f"\n== 1. datasets: {rows} text rows ({text_csv.stat().st_size / 1e6:.1f} MB CSV); {images} PNG images")
    stores = ("local", "pg+disk", "pg+s3")
    results: dict[str, dict[str, list[float]]] = {s: {} for s in stores}
    failed: dict[str, str] = {}
    for _ in range(reps):
        for store in stores:
            if store in failed:
                continue
            env = env_for(tmp, store, svc)
            for label, csv in (("text create", text_csv), ("image create", image_csv)):
                name = label.split()[0]
                took, proc = run([MIXTRAIN, "dataset", "create", name, "--file", str(csv)], env, cwd=csv.parent)
                if proc.returncode != 0:
                    failed[store] = first_line(proc.stderr or proc.stdout)
                    break
                results[store].setdefault(label, []).append(took)
                _, scan = run([sys.executable, "-c", SCAN, name], env)
                if scan.returncode != 0:
                    failed[store] = first_line(scan.stderr)
                    break
                results[store].setdefault(f"{name} scan", []).append(json.loads(scan.stdout)["scan"])
    keys = ("text create", "text scan", "image create", "image scan")
    print(f"{'store':10}" + "".join(f"{k:>15}" for k in keys) + "   (median seconds)")
    for store in stores:
        if store in failed and not results[store]:
            print(f"{store:10} not measured: {failed[store]}")
            continue
        print(f"{store:10}" + "".join(f"{med(results[store].get(k, [])):15.3f}" for k in keys))
    if all(results[s] for s in ("pg+disk", "pg+s3")):
        ratios = ", ".join(
            f"{k} {med(results['pg+s3'][k]) / med(results['pg+disk'][k]):.2f}x"
            for k in keys
            if results["pg+s3"].get(k) and results["pg+disk"].get(k)
        )
        print(f"S3 / local disk (both on the PostgreSQL catalog): {ratios}")


# -- 2. artifacts --------------------------------------------------------------------------------------
def bench_artifacts(tmp: Path, svc: Services, mb: int, reps: int) -> None:
    from pyarrow.fs import LocalFileSystem, copy_files

    from mixtrain import objectstore
    from mixtrain.settings import load_settings

    src = tmp / "adapter"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(os.urandom(mb << 20))
    for name in ("adapter_config.json", "tokenizer.json", "chat_template.jinja", "config.json"):
        (src / name).write_bytes(os.urandom(20_000))
    size = sum(p.stat().st_size for p in src.iterdir()) / 1e6
    print(f"\n== 2. model artifact: {size:.1f} MB adapter folder (5 files)")
    env = svc.s3_env()
    os.environ.update(env, MIXTRAIN_HOME=str(tmp / "art-home"))
    objectstore._filesystem.cache_clear()
    settings = load_settings()
    fs = svc.weed.filesystem()
    bucket = env["MIXTRAIN_WAREHOUSE"][len("s3://") :].split("/")[0]
    t: dict[str, list[float]] = {}
    try:
        for i in range(reps):
            uri = objectstore.join(settings.warehouse, "models", "m", f"v{i}")
            t0 = time.perf_counter()
            objectstore.put_dir(src, uri, settings)
            t.setdefault("ours upload (put_dir)", []).append(time.perf_counter() - t0)
            shutil.rmtree(settings.artifact_cache, ignore_errors=True)
            t0 = time.perf_counter()
            objectstore.get_dir(uri, settings)
            t.setdefault("ours cold download (get_dir)", []).append(time.perf_counter() - t0)
            raw = f"{bucket}/raw/v{i}"
            t0 = time.perf_counter()
            copy_files(str(src), raw, source_filesystem=LocalFileSystem(), destination_filesystem=fs)
            t.setdefault("raw pyarrow upload", []).append(time.perf_counter() - t0)
            dest = tmp / f"raw-down-{i}"
            dest.mkdir()
            t0 = time.perf_counter()
            copy_files(raw, str(dest), source_filesystem=fs, destination_filesystem=LocalFileSystem())
            t.setdefault("raw pyarrow download", []).append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            shutil.copytree(src, tmp / f"local-copy-{i}")
            t.setdefault("local disk copytree", []).append(time.perf_counter() - t0)
    except Exception as exc:
        print(f"not measured: {type(exc).__name__}: {first_line(str(exc))}")
        return
    for k, v in t.items():
        print(f"{k:32} {med(v):7.3f} s  {size / med(v):8.1f} MB/s")
    up = med(t["ours upload (put_dir)"]) / med(t["raw pyarrow upload"])
    down = med(t["ours cold download (get_dir)"]) / med(t["raw pyarrow download"])
    print(f"ours / raw pyarrow: upload {up:.2f}x, cold download (incl. sha256 check) {down:.2f}x")


# -- 3. run start latency ------------------------------------------------------------------------------
def _until_running(env: dict, cwd: Path, reps: int, label: str) -> tuple[list[float], str | None]:
    """Seconds from `workflow run -d` to status running (polled in the database), per rep; and the placement."""
    from mixtrain.client import MixClient
    from mixtrain.settings import load_settings

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client = MixClient(load_settings())
        out, placement = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            _, proc = run([MIXTRAIN, "workflow", "run", "triv", "--seconds", "3", "-d"], env, cwd=cwd)
            if proc.returncode != 0:
                raise RuntimeError(f"{label}: {first_line(proc.stderr)}")
            number = client.list_runs("triv", 1)[0].number
            while True:
                r = client.get_run("triv", number)
                if r.status != "pending":
                    break
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"{label}: run #{number} still pending after 300 s")
                time.sleep(0.01)
            out.append(time.perf_counter() - t0)
            placement = json.dumps(getattr(r, "placement", None))
            while not client.get_run("triv", number).status.is_terminal:
                time.sleep(0.1)
        return out, placement
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_runs(tmp: Path, svc: Services, reps: int) -> None:
    print("\n== 3. run start: `workflow run -d` → status running (in the database)")
    (tmp / "triv.py").write_text(FLOW)
    local = env_for(tmp, "pg+disk", svc)
    subprocess.run(
        [MIXTRAIN, "workflow", "create", "triv.py", "--name", "triv"],
        env=local,
        cwd=tmp,
        check=True,
        capture_output=True,
    )
    try:
        t_local, _ = _until_running(local, tmp, reps, "local")
        print(f"{'this machine (local process)':36} {med(t_local):7.3f} s")
    except Exception as exc:
        print(f"this machine: not measured: {exc}")
        t_local = []
    if svc.ray is None:
        print("Ray: not measured (--skip-ray)")
        return
    ray_env = {**local, "MIXTRAIN_RAY_ADDRESS": svc.ray.dashboard_url}
    try:
        t_ray, placement = _until_running(ray_env, tmp, reps, "ray")
        if placement in (None, "null"):
            print("Ray job runs: not measured — `workflow run` ran locally (Ray runs not on main)")
            t_ray = []
        else:
            print(f"{'Ray job (mixtrain workflow run)':36} {med(t_ray):7.3f} s   placement {placement}")
    except Exception as exc:
        print(f"Ray job runs: not measured: {exc}")
        t_ray = []
    from ray.job_submission import JobStatus, JobSubmissionClient

    jc = JobSubmissionClient(svc.ray.dashboard_url)
    raw = []
    for _ in range(reps):
        t0 = time.perf_counter()
        job = jc.submit_job(entrypoint=f"{sys.executable} -c 'import time; time.sleep(3)'")
        while jc.get_job_status(job) == JobStatus.PENDING:
            time.sleep(0.01)
        raw.append(time.perf_counter() - t0)
        while jc.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            time.sleep(0.1)
    print(f"{'raw Ray JobSubmissionClient':36} {med(raw):7.3f} s   (submit → RUNNING)")
    if t_ray and t_local:
        print(
            f"Ray job / local start: {med(t_ray) / med(t_local):.2f}x; ours on Ray / raw Ray: {med(t_ray) / med(raw):.2f}x"
        )


# -- 4. fine-tune --------------------------------------------------------------------------------------
def bench_finetune(tmp: Path, svc: Services, steps: int) -> None:
    from harness import EXAMPLES, build_tiny_models, finetune_args
    from mixtrain.testing.colour_task import make_task

    print(f"\n== 4. tiny LLaVA LoRA fine-tune, {steps} steps: one node here vs --num_nodes 2 on the Ray cluster")
    if svc.ray is None:
        print("not measured (--skip-ray)")
        return
    models = build_tiny_models(tmp / "tiny", ("llava",))
    task = make_task(tmp / "ft-task", n_train=16, n_test=1, size=48)
    env = env_for(tmp, "pg+disk", svc)
    subprocess.run(
        [MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune"],
        env=env,
        cwd=EXAMPLES,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [MIXTRAIN, "dataset", "create", "colours", "--file", task["train_csv"]],
        env=env,
        check=True,
        capture_output=True,
    )
    spec = ["--dataset_name", "colours", "--base_model", str(models["llava"])]
    spec += finetune_args(steps=steps, batch_size=1, max_seq_length=256)
    walls = {}
    for label, extra, e in (
        ("one node (local)", [], env),
        ("2 nodes (Ray Train gang)", ["--num_nodes", "2"], {**env, "MIXTRAIN_RAY_ADDRESS": svc.ray.dashboard_url}),
    ):
        out = f"ft-{len(walls)}"
        took, proc = run([MIXTRAIN, "workflow", "run", "vlm-finetune", *spec, "--output_model_name", out, *extra], e)
        if proc.returncode != 0:
            print(f"{label:28} not measured: {first_line(proc.stderr or proc.stdout)}")
            continue
        walls[label] = took
        print(f"{label:28} {took:7.1f} s wall (the whole `workflow run`, attached)")
    if len(walls) == 2:
        a, b = walls.values()
        print(f"2 nodes / 1 node wall: {b / a:.2f}x (2 CPU cores shared by both nodes here: no speed-up is possible)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--artifact-mb", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--only", choices=["datasets", "artifacts", "runs", "finetune"])
    a = ap.parse_args()
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", AXOLOTL_DO_NOT_TRACK="1", DO_NOT_TRACK="1")
    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-team-"))
    svc = Services(tmp, ray=not a.skip_ray and a.only in (None, "runs", "finetune"))
    try:
        if a.only in (None, "datasets"):
            bench_datasets(tmp, svc, a.rows, a.images, a.reps)
        if a.only in (None, "artifacts"):
            bench_artifacts(tmp, svc, a.artifact_mb, a.reps)
        if a.only in (None, "runs"):
            bench_runs(tmp, svc, a.reps)
        if a.only in (None, "finetune") and not a.skip_finetune:
            bench_finetune(tmp, svc, a.steps)
    finally:
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
