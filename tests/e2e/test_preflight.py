"""Preflight measurement: the length pass agrees with the real processor; --image_size reaches Axolotl; --verbose.

Real processors of the tiny models (all four families), real images of many sizes (an EXIF-rotated one
among them), real Axolotl for the dry runs and for its own image resizing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import FAMILIES, colour_dataset, prefetch


def _rows(folder: Path) -> list[dict]:
    """Examples whose images have sizes no two alike, as a user's photos have (one stored rotated by EXIF)."""
    from PIL import Image

    from mixtrain.vlm.prepare import to_messages

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (w, h) in enumerate([(64, 64), (200, 90), (90, 200), (333, 121), (57, 410), (512, 384), (31, 29)]):
        path = folder / f"{i}.jpg"
        im = Image.new("RGB", (w, h), (40 * i % 256, 90, 160))
        if i == 3:
            exif = Image.Exif()
            exif[0x0112] = 6  # shown rotated by 90°: the processor sees 121x333
            im.save(path, exif=exif)
        else:
            im.save(path)
        rows.append(to_messages(str(path), "What colour is this? " * (i + 1), "blue " * i + "red"))
    return rows * 3  # 21 rows


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("family", "kwargs"), [(f, {}) for f in FAMILIES] + [("qwen2_vl", {"max_pixels": 100_000})], ids=str
)
def test_length_pass_equals_the_processor_on_every_row(tmp_path, tiny_models, family, kwargs):
    """With a sample of 3, every other row's length comes from the length pass alone: it must be exact."""
    from transformers import AutoProcessor

    from mixtrain.vlm import configure, families, measure

    rows = _rows(tmp_path / "img")
    template = configure.chat_template_settings(families.get_family(family)).get("chat_template_jinja")
    proc = AutoProcessor.from_pretrained(tiny_models[family], use_fast=False, **kwargs)  # as on CPU
    full = measure.measure(proc, template, rows, workers=1)  # processor on every row (21 <= SAMPLE)
    assert full.method == "processor on every row" and full.processor_rows == len(rows)
    sample, pool_min = measure.SAMPLE, measure.POOL_MIN
    measure.SAMPLE, measure.POOL_MIN = 3, 4
    try:
        fast = measure.measure(proc, template, rows, workers=2)  # forked pool, length pass on 18 rows
    finally:
        measure.SAMPLE, measure.POOL_MIN = sample, pool_min
    assert fast.processor_rows == 3 and "sample of 3" in fast.method and not fast.disagreements, fast.disagreements
    assert fast.lengths == full.lengths and fast.image_tokens == full.image_tokens
    assert min(full.image_tokens) > 0 and len(set(full.lengths)) > 3


# Axolotl's own processing strategy on a dry run's training file: the image size and its image tokens.
AXOLOTL_IMAGES = (
    "import json, sys, yaml\nfrom transformers import AutoProcessor\n"
    "from axolotl.processing_strategies import get_processing_strategy\n"
    "raw = yaml.safe_load(open(sys.argv[1] + '/axolotl.yml'))\n"
    "proc = AutoProcessor.from_pretrained(raw['base_model'], **(raw.get('processor_kwargs') or {}))\n"
    "row = json.loads(open(sys.argv[1] + '/train.jsonl').readline())\n"
    "st = get_processing_strategy(proc, raw.get('chat_template_jinja'), raw.get('chat_template'), image_size=raw['image_size'])\n"
    "msgs = st([row])[0]['messages']\n"
    "ids = proc.apply_chat_template([msgs], chat_template=raw.get('chat_template_jinja'), tokenize=True, return_dict=True)['input_ids'][0]\n"
    "ids = ids.tolist() if hasattr(ids, 'tolist') else ids\n"
    "print('AXOLOTL', msgs[0]['content'][0]['image'].size, ids.count(proc.image_token_id))\n"
)


@prefetch.job("image_size_runs", needs=("tiny_models",))
def _image_size_runs(tmp) -> dict:
    """The two dry runs, in a home of their own (started early in the background, harness/prefetch.py)."""
    e2e = prefetch.mix(tmp.mktemp("sized"))
    e2e.register_finetune()
    colour_dataset(e2e, "sized", n=4, size=96)
    args = ["workflow", "run", "vlm-finetune", "--dataset_name", "sized", "--output_model_name", "sized"]
    args += ["--base_model", str(prefetch.result("tiny_models", tmp)["qwen2_vl"]), "--model_type", "qwen2_vl"]
    args += ["--dry_run", "true"]
    plain = e2e.mix(*args, check=0)
    sized = e2e.mix(*args, "--image_size", "300", "--verbose", check=0)
    run = e2e.last_run()
    axolotl = subprocess.run(
        [sys.executable, "-c", AXOLOTL_IMAGES, run["run_dir"]], capture_output=True, text=True, env=e2e.env, timeout=300
    )
    return {"env": e2e, "plain": plain, "sized": sized, "run": run, "axolotl": axolotl}


@pytest.fixture(scope="module")
def image_size_runs(tmp_path_factory, tiny_models) -> dict:
    return prefetch.result("image_size_runs", tmp_path_factory)


@pytest.mark.e2e
def test_image_size_pads_every_image_as_axolotl_does(image_size_runs):
    plain, sized = image_size_runs["plain"], image_size_runs["sized"]
    assert "image tokens 16/16/16" in plain.stdout  # 96-px images at the processor's own resolution
    assert "adapter: lora" not in plain.stdout  # no YAML dump without --verbose
    assert "image tokens 9/9/9" in sized.stdout, sized.stdout  # padded to 300x300, then the processor's cap
    run_dir = Path(image_size_runs["run"]["run_dir"])
    yaml_text = (run_dir / "axolotl.yml").read_text()
    assert "image_size: 300" in yaml_text
    # --verbose: the generated YAML, whole, in the output
    assert f"--- {run_dir / 'axolotl.yml'} ---" in sized.stdout and yaml_text.strip() in sized.stdout
    report = json.loads((run_dir / "data_report.json").read_text())["preflight"]
    assert report["image_size"] == 300 and report["image_pixels"] == {"min": 90000, "median": 90000, "max": 90000}
    # Axolotl's own processing strategy, on the training file as written, gives the images the preflight counted.
    out = image_size_runs["axolotl"]
    assert "AXOLOTL (300, 300) 9" in out.stdout, out.stderr[-2000:]
