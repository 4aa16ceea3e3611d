"""Dashboard test pieces: a home built through the real CLI, and a crawler over the app's links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from harness.cli import REPO, Mix

SLEEPY = REPO / "tests/ui/flows/sleepy.py"
PLANTED = "planted-Secret-Value-7f3a9c2e"  # must never appear in any page or response


def basic_home(root: Path) -> Path:
    """A dataset of images, the sleepy workflow with one completed run, and a planted secret."""
    from mixtrain.testing.colour_task import make_task

    mix = Mix(root)
    task = make_task(root / "task", n_train=12, n_test=2, size=48)
    mix("dataset", "create", "colours", "--file", task["train_csv"], check=0)
    mix("workflow", "create", SLEEPY, "--name", "sleepy", "--description", "prints lines slowly", check=0)
    mix("workflow", "run", "sleepy", "--label", "first", "--lines", "2", check=0)
    mix("secret", "create", "PLANTED_KEY", PLANTED, check=0)
    return mix.home


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
