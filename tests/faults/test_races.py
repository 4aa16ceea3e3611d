"""§5: races — concurrent creates of one dataset, concurrent first users of the secret key."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.faults import clean_error, files_under


def _csv(path: Path, rows: int = 200) -> Path:
    path.write_text("image,text\n" + "".join(f"img{i}.png,caption {i}\n" for i in range(rows)))
    return path


# The real CLI in a child process, held at a barrier right after its "does the dataset exist?" pre-check
# until all n creators have passed it: every loser must then lose the commit race, not the pre-check.
AT_BARRIER = """
import os, sys, time
from pathlib import Path
from mixtrain.datasets.store import DatasetStore

barrier, n = Path(sys.argv[1]), int(sys.argv[2])
real, first = DatasetStore._exists, [True]

def _exists(self, name):
    found = real(self, name)
    if first:
        first.pop()
        (barrier / str(os.getpid())).write_text("exists" if found else "absent")
        end = time.monotonic() + 120
        while len(list(barrier.iterdir())) < n:
            if time.monotonic() > end:
                raise SystemExit("barrier: not every creator reached the pre-check")
            time.sleep(0.01)
    return found

DatasetStore._exists = _exists
sys.argv = ["mixtrain", *sys.argv[3:]]
from mixtrain.cli.main import main
main()
"""


@pytest.mark.parametrize("n", [4, 6])
def test_concurrent_creates_one_wins_others_already_exists(fmix, n):
    src = _csv(fmix.root / "data.csv")
    fmix("dataset", "list", check=0)  # the home exists; the race is on the table, not on first-use setup
    barrier = fmix.root / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", AT_BARRIER, str(barrier), str(n), "dataset", "create", "shared", str(src)],
            env=fmix.env,
            cwd=fmix.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    # every creator found no dataset at its pre-check: whoever lost, lost the commit race
    assert sorted(f.read_text() for f in barrier.iterdir()) == ["absent"] * n, [r.stderr for r in results]
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stderr) for r in results]
    for r in results:
        if r.returncode != 0:
            clean_error(r, "dataset 'shared' already exists")
    info = fmix("dataset", "get", "shared", "--json", check=0).stdout
    assert '"rows": 200' in info
    # the losers' staged files are gone: the warehouse holds the winner's table only
    tables = [d for d in (fmix.home / "warehouse" / "mixtrain").iterdir()]
    assert len(tables) == 1, tables
    fmix("dataset", "delete", "shared", "-y", check=0)
    assert files_under(fmix.home / "warehouse") == set()


def _first_use(key: str, barrier, out):
    from mixtrain.secrets.store import _load_key, _read_key

    barrier.wait()
    try:
        a = _load_key(Path(key))
        b = _read_key(Path(key))  # what any later process reads
        out.put(("ok", a == b and len(a) == 44))
    except Exception as exc:
        out.put(("error", repr(exc)))


@pytest.mark.parametrize("procs", [8, 4])
def test_secret_key_created_atomically_by_concurrent_first_users(tmp_path, procs):
    ctx = mp.get_context("fork")
    bad = []
    for trial in range(15):
        key = tmp_path / f"t{trial}" / "secret.key"
        barrier, out = ctx.Barrier(procs), ctx.Queue()
        ps = [ctx.Process(target=_first_use, args=(str(key), barrier, out)) for _ in range(procs)]
        for p in ps:
            p.start()
        got = [out.get(timeout=60) for _ in ps]
        for p in ps:
            p.join(timeout=60)
        bad += [g for g in got if g != ("ok", True)]
        assert sorted(p.name for p in key.parent.iterdir()) == ["secret.key"], "temp files left behind"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert not bad, bad


def test_concurrent_first_secret_sets_through_the_cli_all_decrypt(fmix):
    exe = shutil.which("mixtrain", path=fmix.env["PATH"])
    fmix("secret", "list", check=0)  # the DB exists; the race is on the key file
    names = [f"TOKEN_{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [exe, "secret", "set", n],
            env=fmix.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    for n, p in zip(names, procs, strict=True):
        _, err = p.communicate(input=f"value-of-{n}", timeout=120)
        assert p.returncode == 0, err
    for n in names:
        assert fmix("secret", "get", n, "--show", check=0).stdout.strip().endswith(f"value-of-{n}")
