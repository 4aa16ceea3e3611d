"""Dashboard test helpers: a home built through the real CLI, and the app under test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SLEEPY = REPO / "tests/ui/flows/sleepy.py"
PLANTED = "planted-Secret-Value-7f3a9c2e"  # must never appear in any page or response


def cli_env(home: Path) -> dict:
    env = dict(os.environ, MIXTRAIN_HOME=str(home), COLUMNS="200", NO_COLOR="1", PATH=f"{BIN}:{os.environ['PATH']}")
    for key in ("MIXTRAIN_DATABASE_URL", "MIXTRAIN_CATALOG_URL", "MIXTRAIN_WAREHOUSE"):
        env.pop(key, None)
    return env


def mix(home: Path, *args, check: int | None = 0, timeout: float = 900, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN / "mixtrain"), *map(str, args)],
        capture_output=True,
        text=True,
        env=cli_env(home),
        timeout=timeout,
        cwd=cwd or home.parent,
        check=False,
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@contextmanager
def home_env(home: Path):
    """MIXTRAIN_HOME for an in-process client while the block runs."""
    saved = {
        k: os.environ.get(k)
        for k in ("MIXTRAIN_HOME", "MIXTRAIN_DATABASE_URL", "MIXTRAIN_CATALOG_URL", "MIXTRAIN_WAREHOUSE")
    }
    os.environ["MIXTRAIN_HOME"] = str(home)
    for k in list(saved)[1:]:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def basic_home(root: Path) -> Path:
    """A dataset of images, the sleepy workflow with one completed run, and a planted secret."""
    from mixtrain.testing.colour_task import make_task

    home = root / "home"
    task = make_task(root / "task", n_train=12, n_test=2, size=48)
    mix(home, "dataset", "create", "colours", "--file", task["train_csv"])
    mix(home, "workflow", "create", SLEEPY, "--name", "sleepy", "--description", "prints lines slowly")
    mix(home, "workflow", "run", "sleepy", "--label", "first", "--lines", "2")
    mix(home, "secret", "create", "PLANTED_KEY", PLANTED)
    return home


def crawl(
    c, start=("/datasets", "/workflows", "/models", "/evals", "/playground", "/secrets"), limit=200
) -> dict[str, str]:
    """Every same-site page reachable by links from the nav (GET only), with its HTML."""
    seen: dict[str, str] = {}
    todo = list(start)
    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen:
            continue
        r = c.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:500])
        seen[url] = r.text
        if "text/html" not in r.headers.get("content-type", ""):
            continue
        for href in re.findall(r'(?:href|src|hx-get)="([^"#]+)"', r.text):
            href = href.replace("&amp;", "&")
            if href.startswith(("javascript:", "data:")) or urlsplit(href).netloc:
                continue
            full = urljoin(url, href)
            if full not in seen and not full.startswith("/static/"):
                todo.append(full)
    return seen
