"""Model artifacts in the team warehouse: registering uploads the adapter, the registry records its URI, and
`model run` on a "second machine" (another MIXTRAIN_HOME sharing only PostgreSQL + S3) downloads it once
into its artifact cache (content-checked) and answers — with an s3:// image as the input (#21 §1).

Runs a tiny model: `flock /tmp/mixtrain-train.lock` like every test that loads one. No training: the
adapter is the random tiny LoRA of ``mixtrain.testing`` on the session's shared tiny LLaVA."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from harness import Mix, cli_env

pytestmark = pytest.mark.postgres

REGISTER = """
import sys
from mixtrain.client import MixClient
from mixtrain.testing.tiny_lora import make_tiny_lora
out, base = sys.argv[1:3]
adapter = make_tiny_lora(base, out, seed=1)
(adapter / "checkpoint-2").mkdir()
(adapter / "checkpoint-2" / "optimizer.pt").write_bytes(b"not an artifact")
v = MixClient().models.register("colour", base_model=base, model_type="llava", train_loss=None, lineage={},
                                 adapter_path=str(adapter))
print(v.adapter_path)
"""


def test_adapter_uploaded_once_and_run_from_a_second_home(tmp_path, pg_url, s3_server, s3_env, tiny_models):
    def team(name: str) -> Mix:
        home = tmp_path / name
        return Mix(tmp_path, home, cli_env(home, MIXTRAIN_DATABASE_URL=pg_url, MIXTRAIN_CATALOG_URL=pg_url, **s3_env))

    a, b = team("a"), team("b")
    local = tmp_path / "lora"
    proc = subprocess.run(
        [sys.executable, "-c", REGISTER, str(local), str(tiny_models["llava"])],
        env=a.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = proc.stdout.strip().splitlines()[-1]
    assert uri.startswith(s3_env["MIXTRAIN_WAREHOUSE"] + "/models/colour/")
    assert b.json("model", "get", "colour")["adapter_path"] == uri  # the registry records the URI

    fs, key = s3_server.filesystem(), uri[len("s3://") :]
    from pyarrow.fs import FileSelector

    uploaded = {i.path[len(key) + 1 :] for i in fs.get_file_info(FileSelector(key, recursive=True)) if i.size}
    assert {"adapter_config.json", "adapter_model.safetensors", ".mixtrain-manifest.json"} <= uploaded
    assert not any(p.startswith("checkpoint-") for p in uploaded)  # resumable checkpoints stay out
    originals = {p: (local / p).read_bytes() for p in ("adapter_config.json", "adapter_model.safetensors")}
    shutil.rmtree(local)  # nothing on the registering machine's disk is used from here on

    image_key = f"{key.split('/')[0]}/inputs/red.png"  # an s3:// image reference, outside the warehouse
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    with fs.open_output_stream(image_key) as out:
        out.write((tmp_path / "red.png").read_bytes())

    inputs = json.dumps({"image": f"s3://{image_key}", "prompt": "What colour?"})
    r = b("model", "run", "colour", "--inputs", inputs, "--config", '{"max_new_tokens": 4}', "--json", check=0)
    assert json.loads(r.stdout)["model"] == "colour"
    (cached,) = (b.home / "cache" / "artifacts").iterdir()  # downloaded once, into b's own cache
    for rel, data in originals.items():
        assert (cached / rel).read_bytes() == data
    assert any((b.home / "cache" / "images").glob("*.png"))  # the s3:// input went through the image cache

    b("model", "delete", "colour", "-y", check=0)
    assert not [i for i in fs.get_file_info(FileSelector(key, recursive=True, allow_not_found=True)) if i.size]
