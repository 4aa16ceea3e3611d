"""`model run` loads base + LoRA adapter without the optional integrations inference never uses.

Why: those imports (scikit-learn, scipy, torchao, bitsandbytes; mistral_common for a tokenizer that is not
Mistral-format; triton without a GPU) were most of a single `model run`'s wall time and printed torchao's
CUDA-extension failures to the user. This proves the real load path (LoadedModel: processor, base model,
peft adapter, generate) in a fresh process leaves them out, answers exactly as the full import path does
(also when transformers' map of installed distributions comes from mixtrain's cache), and leaves the
packages importable afterwards. The cold-start figures themselves are in
benchmarks/bench_inference.py (no timed assertions in tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import FAMILIES, REPO, parallel, prefetch

pytestmark = pytest.mark.e2e

PROBE = r"""
import gc, importlib.util, json, sys
from pathlib import Path
from PIL import Image
from mixtrain.models.inference import LoadedModel

root = Path(sys.argv[1])
class Settings:
    home = root / "home"  # the lean path keeps its map of installed distributions under home/cache
    image_cache = root / "cache"
img = root / "red.png"
Image.new("RGB", (64, 64), (220, 30, 30)).save(img)
m = LoadedModel({"name": "t", "version": 1, "adapter_path": sys.argv[3], "base_model": sys.argv[2]}, Settings())
out = m.run({"image": str(img), "prompt": "What colour is the shape?"}, max_new_tokens=6)
from mixtrain.hardware import nvidia_driver_present
names = ("sklearn", "scipy", "torchao", "bitsandbytes", "mistral_common") + (() if nvidia_driver_present() else ("triton",))
print(json.dumps({"text": out["generated_text"], "peft": type(m.model).__name__, "gc": gc.isenabled(),
                  "loaded": [n for n in names if n in sys.modules],
                  "findable": [n for n in names if importlib.util.find_spec(n) is not None]}))
"""


def _probe(tmp_path, base, adapter, lean: str) -> dict:
    env = dict(prefetch.environ(), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), MIXTRAIN_LEAN_IMPORTS=lean)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(base), str(adapter)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


def _probes(root: Path, base, adapter) -> dict:
    """One family's three loads in a fresh folder: full imports, lean (writes the distributions cache), lean again."""
    root.mkdir(parents=True)
    full = _probe(root, base, adapter, "0")
    lean = _probe(root, base, adapter, "1")
    cache = root / "home" / "cache" / "packages-distributions.json"
    written = cache.stat().st_mtime_ns if cache.is_file() else None
    again = _probe(root, base, adapter, "1")
    rewritten = cache.stat().st_mtime_ns if cache.is_file() else None
    return {"full": full, "lean": lean, "again": again, "cache": written, "cache_after_again": rewritten}


@prefetch.job("lean_probes", needs=("families", "tiny_models"))
def _lean_probes(tmp) -> dict:
    """Every family's probes (each a fresh process loading the session's trained adapter), two families at a time,
    started early in the background (harness/prefetch.py). A family whose probe failed keeps its error."""
    families = prefetch.result("families", tmp)
    tiny_models = prefetch.result("tiny_models", tmp)
    root = tmp.mktemp("lean")

    def one(family: str):
        try:
            adapter = families.env.json("model", "get", families[family].model)["adapter_path"]
            return {"adapter": adapter, **_probes(root / family, tiny_models[family], adapter)}
        except BaseException as exc:  # raised by that family's test
            return {"error": exc}

    return dict(zip(FAMILIES, parallel.run_all([lambda f=f: one(f) for f in FAMILIES]), strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_lean_load_skips_optional_integrations_and_answers_the_same(families, tiny_models, tmp_path_factory, family):
    probes = prefetch.result("lean_probes", tmp_path_factory)[family]
    if "error" in probes:
        raise probes["error"]
    # The session's trained LoRA adapter of this family (real Axolotl, what `model run` loads): its weights
    # are non-zero after training, so the adapter is on the answer path.
    adapter = families.env.json("model", "get", families[family].model)["adapter_path"]
    assert adapter == probes["adapter"]
    assert (Path(adapter) / "adapter_model.safetensors").is_file()

    full, lean, again = probes["full"], probes["lean"], probes["again"]
    assert probes["cache"] is not None  # written by the first lean load ...
    assert probes["cache_after_again"] == probes["cache"]  # ... and read, not rewritten, by the next one

    assert lean["peft"] == full["peft"] and lean["peft"].startswith("Peft")  # the adapter is applied on both paths
    assert full["loaded"], "control: the full import path loads none of them here, so this test proves nothing"
    assert lean["text"] == full["text"] == again["text"]  # greedy: same weights, same answer
    assert lean["gc"] and again["gc"]  # the collector paused for the imports is running again
    assert again["loaded"] == [] and again["findable"] == full["findable"]
    assert lean["loaded"] == [], f"imported during a lean load: {lean['loaded']}"
    assert lean["findable"] == full["findable"]  # hiding is undone after the load
    assert "torchao" not in lean["stderr"]  # its CUDA-extension failures no longer reach the user
