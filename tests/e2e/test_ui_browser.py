"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

One home for the module, built through the real CLI: the session's shared family trainings' home
(`families`: a dataset of images and a completed LLaVA fine-tune — real Axolotl, a few steps, metrics
recorded), to which this module adds a second (base) model, an eval of both, a cheap printing workflow
for live runs, and a planted secret. `mixtrain ui` serves it from a subprocess.
Screenshots of every page land in test-artifacts/ui/ (or $MIXTRAIN_TEST_ARTIFACTS).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import REPO, TRAIN_ARGS, prefetch
from harness.ui import PLANTED, SLEEPY, crawl

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(os.environ.get("MIXTRAIN_TEST_ARTIFACTS") or REPO / "test-artifacts") / "ui"
STEPS = int(TRAIN_ARGS[TRAIN_ARGS.index("--max_steps") + 1])  # the shared trainings' steps
PROMPT = "What colour is the shape?"
GEN = '{"max_new_tokens": 6}'


def chromium_path() -> str:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/chromium.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        why = f"headless Chromium unavailable: {proc.stderr.strip()[-300:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # CI can install it: a missing browser there is a failure, not a skip
        pytest.skip(why)
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(families):
    """The session's LLaVA fine-tune (dataset, run, model), shared with the other e2e tests."""
    return families["llava"]


@pytest.fixture(scope="module")
def browser_home(families, tmp_path_factory):
    return prefetch.result("browser_home", tmp_path_factory)


@pytest.fixture(scope="module")
def home(browser_home, trained):
    """The fixture home (built once): the families' home plus what the dashboard tests need in it."""
    return browser_home


@prefetch.job("browser_home", needs=("families",))
def _browser_home(tmp):
    """What the dashboard tests add to the families' home (started early in the background, harness/prefetch.py)."""
    families = prefetch.result("families", tmp)
    trained = families["llava"]
    e2e, tiny = families.env, families.tiny_models["llava"]
    assert trained.run["status"] == "completed", trained.log[-3000:]
    e2e.mix("model", "register", "base-llava", "--base_model", tiny, "--model_type", "llava", check=0)
    # An eval set whose reference is the fine-tune's own answer on even rows: it is right there and the
    # base model only where it happens to answer alike, so the two disagree on some rows but not all.
    with open(e2e.root / f"task-{trained.dataset}" / "train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (e2e.root / "ask.jsonl").write_text(
        "".join(json.dumps({"image": r["image_path"], "prompt": r["prompt"]}) + "\n" for r in rows)
    )
    e2e.mix(
        "model",
        "run",
        trained.model,
        "--inputs-file",
        e2e.root / "ask.jsonl",
        "-c",
        GEN,
        "-o",
        e2e.root / "answers.jsonl",
        check=0,
    )
    answers = [json.loads(line)["generated_text"] for line in (e2e.root / "answers.jsonl").read_text().splitlines()]
    with open(e2e.root / "evalset.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        w.writerows(
            (r["image_path"], r["prompt"], answers[i] if i % 2 == 0 else r["response"]) for i, r in enumerate(rows)
        )
    e2e.mix("dataset", "create", "colours-eval", "--file", e2e.root / "evalset.csv", check=0)
    models = f"{trained.model},base-llava"
    e2e.mix("eval", "create", "ev", "--dataset", "colours-eval", "--models", models, "-c", GEN, check=0)
    e2e.mix("workflow", "create", SLEEPY, "--name", "sleepy", "--description", "prints lines slowly", check=0)
    e2e.mix("workflow", "run", "sleepy", "--label", "first", "--lines", "3", check=0)
    e2e.mix("secret", "create", "PLANTED_KEY", PLANTED, check=0)
    return e2e


@pytest.fixture(scope="module")
def server(home):
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mixtrain"), "ui", "--port", str(port)],
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/datasets", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Watched:
    """A page that records console errors, page errors and failed same-site requests."""

    def __init__(self, browser, base: str):
        self.base = base
        self.ctx = browser.new_context(viewport={"width": 1360, "height": 900})
        self.page = self.ctx.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on(
            "response",
            lambda r: (
                self.problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 and r.url.startswith(base) else None
            ),
        )

    def go(self, path: str):
        self.page.goto(self.base + path, wait_until="load")
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        return out

    def close(self):
        self.ctx.close()


@pytest.fixture
def web(browser, server):
    w = Watched(browser, server)
    yield w
    w.close()


def update_docs(shot: str, doc: str) -> None:
    """MIXTRAIN_UPDATE_DOCS=1 refreshes the README's screenshots from this run."""
    if os.environ.get("MIXTRAIN_UPDATE_DOCS") == "1":
        shutil.copy(ARTIFACTS / f"{shot}.png", REPO / "docs" / f"{doc}.png")


def wait_images(page, selector="img.thumb"):
    page.wait_for_function(f"[...document.querySelectorAll('{selector}')].every(i => i.complete)", timeout=120_000)
    return page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)")


def _pages(trained) -> list[tuple[str, str]]:
    return [
        ("datasets", "/datasets"),
        ("dataset", f"/datasets/{trained.dataset}"),
        ("workflows", "/workflows"),
        ("workflow", "/workflows/vlm-finetune"),
        ("run", f"/runs/vlm-finetune/{trained.run['number']}"),
        ("run-form", "/workflows/sleepy/run"),
        ("models", "/models"),
        ("model", f"/models/{trained.model}"),
        ("evals", "/evals"),
        ("eval", "/evals/ev"),
        ("playground", "/playground"),
        ("secrets", "/secrets"),
    ]


def test_every_page_renders_without_errors_or_secrets(web, trained):
    for name, path in _pages(trained):
        page = web.go(path)
        wait_images(page)
        assert page.locator("header nav a").count() == 6, path
        html = page.content()
        assert PLANTED not in html, path
        web.shot(name)
    assert web.problems == []
    update_docs("run", "dashboard-run")


def test_every_linked_page_answers_and_holds_no_secret(server):
    """Follow every link from the nav (GET only) on the live server: all 200, none with the planted value."""
    import httpx

    with httpx.Client(base_url=server, timeout=120, follow_redirects=True) as c:
        pages = crawl(c, limit=400)
    for must in ("/runs/mixtrain-eval/1", "/evals/ev?disagreements=1", "/datasets/colours-eval", "/models/base-llava"):
        assert any(u.startswith(must) for u in pages), must
    assert not [u for u, body in pages.items() if PLANTED in body]


def test_thumbnails_load_in_the_browser(web, trained):
    widths = wait_images(web.go(f"/datasets/{trained.dataset}"))
    assert len(widths) == 16 and all(w > 0 for w in widths)
    widths = wait_images(web.go("/evals/ev"))
    assert len(widths) == 16 and all(w > 0 for w in widths)
    assert web.problems == []


def test_run_page_chart_has_one_point_per_recorded_step(web, home, trained):
    number = trained.run["number"]
    metrics = home.json("workflow", "metrics", "vlm-finetune", str(number))
    steps = [m["step"] for m in metrics if m.get("loss") is not None]
    assert len(steps) == STEPS
    page = web.go(f"/runs/vlm-finetune/{number}")
    assert page.locator("#chart svg #series-loss use").count() == len(steps)
    assert page.locator("#run-status").inner_text() == "completed"
    assert "chat_template" in page.locator("#axolotl-yaml").inner_text()
    assert "rows_used" in page.locator("#data-report").inner_text()
    model = web.go(f"/models/{trained.model}")
    model.locator("#lineage-run").click()
    model.wait_for_url(f"**/runs/vlm-finetune/{number}")
    model = web.go(f"/models/{trained.model}")
    model.locator("#lineage-dataset").click()
    assert "snapshot=" in model.url and model.locator("#rows").count() == 1
    assert web.problems == []


def _runs(home) -> list[dict]:
    return home.json("workflow", "runs", "sleepy", "-n", "1000")


def test_run_form_refuses_bad_input_next_to_the_field(web, home):
    before = len(_runs(home))
    page = web.go("/workflows/sleepy/run")
    page.fill("#in-label", "x")
    page.fill("#in-lines", "lots")
    page.click("button[type=submit]")
    page.wait_for_selector("#error-lines")
    assert "expected an integer" in page.locator("#field-lines .field-error").inner_text()
    assert page.locator(".field-error").count() == 1
    assert page.input_value("#in-lines") == "lots"
    assert len(_runs(home)) == before
    web.shot("run-form-error")
    assert web.problems == []


def test_live_log_streams_and_cancel_cancels(web, home):
    page = web.go("/workflows/sleepy/run")
    page.fill("#in-label", "live")
    page.fill("#in-lines", "2000")
    page.fill("#in-delay", "0.1")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs/sleepy/*")
    number = int(page.url.rsplit("/", 1)[1])
    page.evaluate("window.__same_page = true")  # a reload would drop this: the log must grow in place
    page.wait_for_function("document.querySelector('#log').textContent.includes('live line 5')", timeout=120_000)
    first = len(page.locator("#log").inner_text())
    page.wait_for_function(f"document.querySelector('#log').textContent.length > {first} + 100", timeout=120_000)
    assert page.evaluate("window.__same_page === true")
    web.shot("run-live")
    page.click("#cancel")
    page.wait_for_url("**note=*", timeout=120_000)
    assert page.locator("#run-status").inner_text() == "cancelled"
    run = next(r for r in _runs(home) if r["number"] == number)
    assert run["status"] == "cancelled"
    assert web.problems == []


def test_playground_answers_equal_model_run(web, home, trained):
    image = trained.test_image(home)
    page = web.go("/playground")
    page.select_option("#model_a", trained.model)
    page.select_option("#model_b", "base-llava")
    page.set_input_files("#image_file", str(image))
    page.fill("#prompt", PROMPT)
    page.click("#ask")
    page.wait_for_selector(".answer[data-model='base-llava']", timeout=600_000)
    shown = {el.get_attribute("data-model"): el.text_content() for el in page.query_selector_all(".answer")}
    assert page.eval_on_selector("#play-image", "e => e.naturalWidth") > 0
    web.shot("playground-answer")
    for model in (trained.model, "base-llava"):
        cli = json.loads(
            home.mix("model", "run", model, "--image", image, "--prompt", PROMPT, "--json", check=0).stdout
        )
        assert shown[model] == cli["generated_text"].strip(), model
    assert web.problems == []


def test_eval_grid_disagreements_match_the_results_table(web, home):
    code = (
        "import json, math, mixtrain\n"
        "ev = mixtrain.get_eval('ev'); labels = [m['label'] for m in ev.info['models']]\n"
        "df = ev.results().to_pandas()\n"
        "norm = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)\n"
        "print(json.dumps(sum(len({norm(r[f'{l}__score']) for l in labels}) > 1 for _, r in df.iterrows())))\n"
    )
    expected = json.loads(
        subprocess.run([sys.executable, "-c", code], env=home.env, capture_output=True, text=True, check=True).stdout
    )
    assert 0 < expected < 16  # the eval set is built so that the models agree on some rows and not on others
    page = web.go("/evals/ev")
    assert int(page.locator("#disagree-count").get_attribute("data-count")) == expected
    assert page.locator("tr.grid-row").count() == 16
    page.click("#disagreements-link")
    page.wait_for_url("**disagreements=1**")
    assert page.locator("tr.grid-row").count() == expected
    assert page.locator("tr.grid-row.disagree").count() == expected
    web.shot("eval-disagreements")
    update_docs("eval-disagreements", "dashboard-eval")
    assert web.problems == []
