"""`mixtrain model run` bad input: one-line error, exit 1, no traceback — all caught before any model loads."""

from __future__ import annotations

import pytest


@pytest.fixture
def registered(mix, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "rows.jsonl").write_text('{"image": "x.png"}\n')
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    for name, hf_type in (("fake-llava", "llava"), ("fake-blip", "blip-2")):  # config only: register reads no weights
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(f'{{"model_type": "{hf_type}"}}')
    mix("model", "register", "base", "--base_model", str(tmp_path / "fake-llava"), "--model_type", "llava", check=0)
    return tmp_path


CASES = [
    (["model", "run", "nope", "--inputs", '{"image": "a.png", "prompt": "hi"}'], "model 'nope' not found"),
    (["model", "run", "base", "--version", "7", "--inputs", '{"image": "a.png", "prompt": "hi"}'], "has no version 7"),
    (["model", "run", "base", "--inputs", '{"image": "{tmp}/missing.png", "prompt": "hi"}'], "not found"),
    (
        ["model", "run", "base", "--inputs", '{"image": "{tmp}/notes.txt", "prompt": "hi"}'],
        "does not decode as an image",
    ),
    (
        ["model", "run", "base", "--inputs", '{"image": "http://127.0.0.1:9/x.png", "prompt": "hi"}'],
        "http://127.0.0.1:9/x.png",
    ),
    (["model", "run", "base", "--inputs", '{"prompt": "hi"}'], "inputs need 'image'"),
    (
        ["model", "run", "base", "--inputs", '{"image": "a.png", "images": ["b.png"], "prompt": "hi"}'],
        "inputs give both 'image' and 'images'",
    ),
    (["model", "run", "base", "--inputs", '{"images": "a.png", "prompt": "hi"}'], "'images' must be a non-empty list"),
    (["model", "run", "base", "--inputs", '{"images": [], "prompt": "hi"}'], "'images' must be a non-empty list"),
    (
        ["model", "run", "base", "--inputs", '{"images": ["a.png", "b.png"], "prompt": "<image> vs ?"}'],
        "the prompt has 1 <image> placeholder(s) but the inputs give 2 image(s)",
    ),
    (
        ["model", "run", "base", "--inputs", '{"images": ["{tmp}/notes.txt", "{tmp}/missing.png"], "prompt": "hi"}'],
        "does not decode as an image",
    ),
    (["model", "run", "base", "--inputs", '{"image": "a.png"}'], "inputs need 'prompt'"),
    (["model", "run", "base", "--inputs", '{"image": "a.png", "prompt": "hi"'], "--inputs: invalid JSON"),
    (["model", "run", "base", "--inputs", '["a.png"]'], "inputs must be a JSON object"),
    (
        ["model", "run", "base", "--inputs", '{"image": "a.png", "prompt": "hi", "colour": 1}'],
        "unknown input key(s): colour",
    ),
    (
        ["model", "run", "base", "--image", "a.png", "--prompt", "hi", "--config", '{"temperature": -1}'],
        "temperature ≥ 0",
    ),
    (
        ["model", "run", "base", "--image", "a.png", "--prompt", "hi", "--config", '{"beams": 4}'],
        "unknown generation setting(s): beams",
    ),
    (["model", "run", "base"], "give the inputs one way"),
    (["model", "run", "base", "--inputs-file", "{tmp}/rows.jsonl"], "row 1 of"),
    (["model", "run", "base", "--inputs-file", "{tmp}/broken.jsonl"], "line 1: invalid JSON"),
    (["model", "run", "base", "--inputs-file", "{tmp}/none.jsonl"], "inputs file not found"),
    (["model", "get", "nope"], "model 'nope' not found"),
    (["model", "delete", "nope", "-y"], "model 'nope' not found"),
    (["model", "export", "base", "--merged", "{tmp}/out"], "base model without an adapter"),
    # the destination is checked before anything loads; the error names the path (was a traceback)
    (["model", "export", "base", "--merged", "{tmp}/notes.txt"], "{tmp}/notes.txt is a file, not a folder"),
    (
        ["model", "export", "base", "--merged", "{tmp}/notes.txt/sub"],
        "cannot write the export to {tmp}/notes.txt/sub: Not a directory",
    ),
    (["model", "register", "x", "--base_model", "y", "--model_type", "gpt2"], "unknown model_type 'gpt2'"),
    (["model", "register", "x", "--base_model", "{tmp}/no-such-model", "--model_type", "llava"], "does not exist"),
    (["model", "register", "x", "--base_model", "{tmp}/fake-blip", "--model_type", "llava"], "does not support"),
    (
        ["model", "register", "x", "--base_model", "someone/not-cached-model", "--model_type", "llava"],
        "cannot read base model",
    ),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[f"{i}-{c[1][:30]}" for i, c in enumerate(CASES)])
def test_model_bad_input(mix, registered, argv, message):
    argv = [a.replace("{tmp}", str(registered)) for a in argv]
    res = mix(*argv)
    message = message.replace("{tmp}", str(registered))
    assert res.returncode == 1, res.stdout + res.stderr
    assert message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("Error: ") and "Traceback" not in res.stderr
