"""The dashboard over HTTP (in-process ASGI, real stores): pages, security, pagination, forms."""

from __future__ import annotations

import csv
import re

import pytest

from harness import Mix
from harness.ui import PLANTED, crawl


def cli(home):
    """The real CLI in the module's dashboard home."""
    return Mix(home.parent, home)


def csrf(c) -> str:
    return c.cookies.get("mixtrain_csrf")


def test_every_page_renders_and_no_page_holds_a_secret_value(app_client):
    pages = crawl(app_client)
    for must in ("/datasets/colours", "/workflows/sleepy", "/workflows/sleepy/run", "/runs/sleepy/1", "/secrets"):
        assert must in pages
    assert any(u.startswith("/thumb/dataset/colours/") for u in pages)
    assert "PLANTED_KEY" in pages["/secrets"]  # the name is listed …
    for url, body in pages.items():
        assert PLANTED not in body, url  # … its value never
    assert "first line 0" in pages["/runs/sleepy/1"]  # the run's log


def test_state_changes_need_post_and_the_csrf_token(app_client, ui_home):
    c = app_client
    assert c.post("/secrets", data={"name": "NEW_ONE", "value": "abcdefgh"}).status_code == 403
    assert c.post("/secrets", data={"name": "NEW_ONE", "value": "abcdefgh", "csrf": "forged"}).status_code == 403
    assert c.post("/secrets/PLANTED_KEY/delete").status_code == 403
    assert c.get("/secrets/PLANTED_KEY/delete").status_code in (404, 405)
    names = cli(ui_home)("secret", "list", "--json", check=0).stdout
    assert "NEW_ONE" not in names and "PLANTED_KEY" in names
    # A request from another site arrives without our cookie: refused even with a token-looking field.
    from fastapi.testclient import TestClient

    fresh = TestClient(c.app, base_url="http://127.0.0.1")
    assert fresh.post("/secrets", data={"name": "NEW_ONE", "value": "abcdefgh", "csrf": csrf(c)}).status_code == 403
    ok = c.post("/secrets", data={"name": "NEW_ONE", "value": "abcdefgh", "csrf": csrf(c)}, follow_redirects=False)
    assert ok.status_code == 303
    assert "NEW_ONE" in cli(ui_home)("secret", "list", "--json", check=0).stdout
    assert c.post("/secrets/NEW_ONE/delete", data={"csrf": csrf(c)}, follow_redirects=False).status_code == 303
    assert "NEW_ONE" not in cli(ui_home)("secret", "list", "--json", check=0).stdout


def test_oversized_posts_are_refused_before_reading(app_client):
    r = app_client.post(
        "/playground", content=b"x" * (26 * 2**20), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413


def test_csrf_cookie_is_httponly_and_samesite_strict(ui_home):
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    r = TestClient(create_app(), base_url="http://127.0.0.1").get("/datasets")
    cookie = r.headers["set-cookie"].lower()
    assert "mixtrain_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize(
    "path",
    [
        "/thumb/dataset/colours/1/0/..%2F..%2F..%2Fetc%2Fpasswd",
        "/thumb/dataset/../../etc/passwd",
        "/thumb/dataset/colours/%2E%2E/0/image_path",
        "/thumb/dataset/colours/{snap}/0/..%2F..%2Fetc%2Fpasswd",
        "/thumb/dataset/colours/{snap}/99999/image_path",
        "/thumb/dataset/colours/{snap}/0/prompt",
        "/uploads/..%2F..%2Fmixtrain.db",
        "/uploads/../mixtrain.db",
        "/static/../app.py",
        "/static/..%2F..%2Fclient.py",
        "/thumb/eval/x/0",
    ],
)
def test_images_are_served_only_for_references_the_stores_hold(app_client, ui_home, path):
    snap = re.search(r"/thumb/dataset/colours/(\d+)/", app_client.get("/datasets/colours").text).group(1)
    r = app_client.get(path.format(snap=snap))
    assert r.status_code == 404, (path, r.status_code)
    assert b"root:" not in r.content and b"SQLite" not in r.content


def test_thumbnails_are_real_jpegs_and_cached(app_client, ui_home):
    html = app_client.get("/datasets/colours").text
    srcs = re.findall(r'src="(/thumb/dataset/[^"]+)"', html)
    assert len(srcs) == 12
    r = app_client.get(srcs[0])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    cached = list((ui_home / "cache" / "thumbs").glob("*.jpg"))
    assert cached and any(p.read_bytes() == r.content for p in cached)


def test_token_login_sets_a_strict_httponly_session(ui_home):
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    token = "t0ken-" + "x" * 20
    c = TestClient(create_app(token=token), base_url="http://127.0.0.1")
    r = c.get("/models", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.get("/thumb/dataset/colours/1/0/image_path", follow_redirects=False).status_code == 303
    c.get("/login")
    assert c.post("/secrets", data={"name": "NOPE", "value": "abcdefgh", "csrf": csrf(c)}).status_code == 401
    bad = c.post("/login", data={"token": "wrong", "next": "/models", "csrf": csrf(c)})
    assert bad.status_code == 401 and token not in bad.text
    ok = c.post("/login", data={"token": token, "next": "/models", "csrf": csrf(c)}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/models"
    cookie = ok.headers["set-cookie"].lower()
    assert "mixtrain_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/models").status_code == 200
    off_site = c.post(
        "/login", data={"token": token, "next": "//evil.example/x", "csrf": csrf(c)}, follow_redirects=False
    )
    assert off_site.headers["location"] == "/"


def test_run_form_shows_each_bad_input_next_to_its_field(app_client, ui_home):
    before = cli(ui_home)("workflow", "runs", "sleepy", "--json", check=0).stdout.count('"number"')
    r = app_client.post(
        "/workflows/sleepy/run",
        data={"label": "", "lines": "many", "delay": "0", "mode": "plain", "csrf": csrf(app_client)},
    )
    assert r.status_code == 200  # the form is shown again, with the errors (a browser logs 4xx pages as console errors)
    field = re.search(
        r'<div class="field invalid" id="field-lines">(.*?)</div>\s*</div>', r.text, re.DOTALL
    ) or re.search(r'id="field-lines">(.*?)id="field-delay"', r.text, re.DOTALL)
    assert field and 'id="error-lines"' in field.group(1) and "expected an integer" in field.group(1)
    assert 'value="many"' in r.text  # what was typed is kept
    assert re.search(r'id="error-label">required', r.text)
    assert 'id="error-delay"' not in r.text and 'id="error-mode"' not in r.text
    r = app_client.post("/workflows/sleepy/run", data={"label": "x", "mode": "shouty", "csrf": csrf(app_client)})
    assert re.search(r'id="error-mode">[^<]*not one of plain, loud', r.text)
    after = cli(ui_home)("workflow", "runs", "sleepy", "--json", check=0).stdout.count('"number"')
    assert after == before  # nothing started


def test_run_form_starts_a_run_with_typed_inputs(app_client, ui_home):
    r = app_client.post(
        "/workflows/sleepy/run",
        data={"label": "formrun", "lines": "2", "delay": "", "mode": "loud", "csrf": csrf(app_client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    number = int(r.headers["location"].rsplit("/", 1)[1])
    cli(ui_home)("workflow", "logs", "sleepy", str(number), "-f", check=0)
    runs = __import__("json").loads(cli(ui_home)("workflow", "runs", "sleepy", "--json", check=0).stdout)
    run = next(x for x in runs if x["number"] == number)
    assert run["status"] == "completed"
    assert run["inputs"] == {
        "label": "formrun",
        "lines": 2,
        "delay": 0.0,
        "mode": "loud",
    }  # typed; empty delay kept its default
    assert "FORMRUN LINE 1" in app_client.get(f"/runs/sleepy/{number}").text


def test_a_thousand_runs_paginate_in_the_database(app_client, ui_home):
    from mixtrain.client import MixClient

    reg = MixClient().workflows
    have = len(reg.runs("sleepy"))
    for _ in range(1000 - have):
        run = reg.new_run("sleepy", 1, {"label": "bulk", "lines": 0, "delay": 0.0, "mode": "plain"})
        reg.set_status(run["id"], "completed")
    first = app_client.get("/workflows/sleepy").text
    assert first.count('<td><a href="/runs/sleepy/') == 25
    assert 'href="/runs/sleepy/1000"' in first and "page 1 of 40" in first
    last = app_client.get("/workflows/sleepy?page=40").text
    numbers = [int(n) for n in re.findall(r'<td><a href="/runs/sleepy/(\d+)">', last)]
    assert numbers == list(range(25, 0, -1))


def test_a_large_dataset_pages_server_side(app_client, ui_home, tmp_path):
    img = next((ui_home.parent / "task" / "images").glob("*.png"))
    path = tmp_path / "big.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["idx", "image", "text"])
        w.writerows((i, str(img), f"row {i}") for i in range(100_000))
    cli(ui_home)("dataset", "create", "big", "--file", path, check=0)
    html = app_client.get("/datasets/big?page=2000").text
    assert "page 2000 of 2000" in html
    assert ">row 99999<" in html and ">row 99950<" in html and ">row 99949<" not in html
    thumb = re.findall(r'src="(/thumb/dataset/big/\d+/99999/image)"', html)
    assert thumb and app_client.get(thumb[0]).status_code == 200


def test_missing_things_are_404_pages_with_the_fix(app_client):
    for url in ("/datasets/nope", "/workflows/nope", "/runs/sleepy/99999", "/models/nope"):
        r = app_client.get(url)
        assert r.status_code == 404 and 'id="error"' in r.text, url
    assert "mixtrain workflow runs sleepy" in app_client.get("/runs/sleepy/99999").text
    # numbers past SQLite's 64-bit integers: 4xx pages, not an OverflowError's 500
    huge = "99999999999999999999999"
    for url in (f"/runs/sleepy/{huge}", f"/runs/sleepy/{huge}/log", f"/runs/sleepy/1/log?offset={huge}"):
        r = app_client.get(url)
        assert r.status_code in (400, 404) and 'id="error"' in r.text, (url, r.status_code)


def test_pages_without_data_say_so(app_client):
    run = app_client.get("/runs/sleepy/1").text
    assert "No metrics recorded" in run  # a plain workflow logs no training steps


def test_open_mode_answers_only_to_loopback_host_names(ui_home):
    from fastapi.testclient import TestClient

    from mixtrain.ui.app import create_app

    assert TestClient(create_app(), base_url="http://127.0.0.1:8765").get("/datasets").status_code == 200
    assert TestClient(create_app(), base_url="http://localhost:8765").get("/datasets").status_code == 200
    rebound = TestClient(create_app(), base_url="http://attacker.example:8765").get("/datasets")
    assert rebound.status_code == 400 and "colours" not in rebound.text
    with_token = TestClient(create_app(token="x" * 20), base_url="http://dashboard.lan:8765").get(
        "/datasets", follow_redirects=False
    )
    assert (
        with_token.status_code == 303
    )  # a token-protected dashboard may be reached by any name: it asks for the token


def test_a_row_with_several_images_shows_each(app_client, ui_home, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    imgs = sorted((ui_home.parent / "task" / "images").glob("*.png"))[:3]
    path = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table({"image_path": [[str(imgs[0]), str(imgs[1])], [str(imgs[2])]], "prompt": ["which?", "this?"]}), path
    )
    cli(ui_home)("dataset", "create", "pairs", "--file", path, check=0)
    html = app_client.get("/datasets/pairs").text
    srcs = re.findall(r'src="(/thumb/dataset/pairs/[^"]+)"', html)
    assert [s.split("/", 5)[-1] for s in srcs] == ["0/image_path", "0/image_path?k=1", "1/image_path"], srcs
    # each thumbnail is named by its own source file, never by the stored reference's fields
    assert re.findall(r'<img class="thumb"[^>]* alt="([^"]*)"', html) == [str(p) for p in imgs], html
    assert "&#39;sha256&#39;" not in html and "'sha256'" not in html  # no ref dict printed anywhere
    bodies = [app_client.get(s) for s in srcs]
    assert all(b.status_code == 200 and b.content[:2] == b"\xff\xd8" for b in bodies)
    assert bodies[0].content != bodies[1].content  # the second thumbnail is the second image
    assert app_client.get(srcs[1].replace("k=1", "k=2")).status_code == 404


def test_run_page_shows_the_files_its_workflow_declared(app_client, ui_home):
    """#17.6: the run page knows no workflow's file names; it shows what the run declared (files.json)."""
    import json

    from mixtrain.client import MixClient
    from mixtrain.workflows.runfolder import RunFolder

    run = MixClient().workflows.run("sleepy", 1)
    folder = RunFolder(run["run_dir"])
    (folder / "my_report.json").write_text(json.dumps({"rows_used": 41, "bad_rows": []}))
    (folder / "my.cfg").write_text("learning_rate: 0.5\n")
    (folder / "data_report.json").write_text(json.dumps({"undeclared": 1}))  # another file: not shown
    try:
        folder.declare("report", "my_report.json")
        folder.declare("config", "my.cfg")
        page = app_client.get("/runs/sleepy/1").text
        assert "rows_used" in page and "41" in page and "learning_rate: 0.5" in page
        assert "undeclared" not in page
        (folder / RunFolder.DECLARED).write_text(json.dumps({"report": "../../../secret.key"}))  # only its own files
        page = app_client.get("/runs/sleepy/1").text
        assert 'id="data-report"' not in page and 'id="axolotl-yaml"' not in page
    finally:
        for name in ("my_report.json", "my.cfg", "data_report.json", RunFolder.DECLARED):
            (folder / name).unlink(missing_ok=True)
