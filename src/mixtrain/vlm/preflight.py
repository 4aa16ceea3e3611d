"""Preflight, inside the training process before the model loads: every row through the model's real
processor and chat template, so the user learns before any GPU time is spent that

  * a row is longer than --max_seq_length *including its image tokens* (Axolotl neither truncates nor
    drops multimodal rows, and a cut would separate image tokens from image features: the infamous
    "Image features and image tokens do not match" hours in) — the run fails listing those rows, or with
    --on_long_row skip they are dropped from the training file and counted;
  * the run needs more GPU memory than there is (vlm/memory.py) — the run fails with what to change.

The recipe asks for it with ``preflight_request.json`` next to the Axolotl YAML; the result is
``preflight.json`` there (and the token statistics go into data_report.json).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path

from mixtrain.workflows.progress import phase_line

REQUEST = "preflight_request.json"
SAMPLE = 2000  # rows tokenised in full on very large tables; the rest are skipped from the count (stated)
MAX_LISTED = 20


def requested(config_path: str) -> dict | None:
    path = Path(config_path).with_name(REQUEST)
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg, raw: dict, config_path: str, request: dict) -> dict:
    t0 = time.monotonic()
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(
        cfg.base_model, trust_remote_code=bool(cfg.trust_remote_code), **(raw.get("processor_kwargs") or {})
    )
    template = raw.get("chat_template_jinja")
    image_id = getattr(proc, "image_token_id", None)
    if image_id is None and getattr(proc, "image_token", None):
        image_id = proc.tokenizer.convert_tokens_to_ids(proc.image_token)
    train = Path(cfg.datasets[0]["path"])
    rows = train.read_text().splitlines()
    order = list(range(len(rows)))
    sample = order if len(rows) <= SAMPLE else sorted(random.Random(0).sample(order, SAMPLE))
    lengths: dict[int, int] = {}
    images: list[int] = []
    for i in sample:
        ids = proc.apply_chat_template(
            json.loads(rows[i])["messages"], chat_template=template, tokenize=True, return_dict=True
        )["input_ids"]
        ids = ids[0] if ids and isinstance(ids[0], list) else ids
        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        ids = ids[0] if ids and isinstance(ids[0], list) else ids
        lengths[i] = len(ids)
        images.append(ids.count(image_id) if image_id is not None else 0)
    limit = int(cfg.sequence_len)
    numbers_file = train.with_name(train.stem + "_rows.json")
    numbers = json.loads(numbers_file.read_text()) if numbers_file.is_file() else list(range(len(rows)))
    long_lines = {i for i, n in lengths.items() if n > limit}
    long_rows = sorted((numbers[i], lengths[i]) for i in long_lines)  # dataset row numbers
    stats = {
        "rows_checked": len(sample),
        "rows_total": len(rows),
        "max_seq_length": limit,
        "tokens": _stats(list(lengths.values())),
        "image_tokens": _stats(images),
        "long_rows": [{"row": i, "tokens": n} for i, n in long_rows],
        "long_rows_policy": request.get("on_long_row", "fail"),
    }
    print(
        phase_line(
            f"preflight: {len(sample)}{'' if len(sample) == len(rows) else f' of {len(rows)} (sample)'} rows through the processor — "
            f"tokens min/median/max {stats['tokens']['min']}/{stats['tokens']['median']}/{stats['tokens']['max']}, "
            f"image tokens {stats['image_tokens']['min']}/{stats['image_tokens']['median']}/{stats['image_tokens']['max']}",
            time.monotonic() - t0,
        ),
        flush=True,
    )
    if long_rows:
        listed = ", ".join(f"row {i} ({n} tokens)" for i, n in long_rows[:MAX_LISTED]) + (
            " …" if len(long_rows) > MAX_LISTED else ""
        )
        if request.get("on_long_row") != "skip":
            _write(config_path, stats)
            raise SystemExit(
                f"mixtrain: {len(long_rows)} rows are longer than --max_seq_length {limit} with their image tokens: {listed} — "
                "raise --max_seq_length, lower --max_pixels, or pass --on_long_row skip"
            )
        keep = [r for i, r in enumerate(rows) if i not in long_lines]
        if not keep:
            _write(config_path, stats)
            raise SystemExit(
                f"mixtrain: every row is longer than --max_seq_length {limit} with its image tokens — raise --max_seq_length or lower --max_pixels"
            )
        tmp = train.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, train)
        print(
            phase_line(f"skipping {len(long_rows)} rows longer than {limit} tokens (--on_long_row skip): {listed}"),
            flush=True,
        )
    stats["memory"] = _memory(cfg, raw, request, max(lengths.values()))
    _write(config_path, stats)
    return stats


def _memory(cfg, raw: dict, request: dict, longest: int) -> dict:
    import torch
    from transformers import AutoConfig

    from mixtrain.vlm.memory import REMEDIES, architecture, estimate, verdict

    config = AutoConfig.from_pretrained(cfg.base_model, trust_remote_code=bool(cfg.trust_remote_code))
    arch = architecture(config, request["lora_target"], int(cfg.lora_r))
    zero = 0
    if cfg.deepspeed:
        zero = json.loads(Path(cfg.deepspeed).read_text())["zero_optimization"]["stage"]
    cuda = torch.cuda.is_available()
    est = estimate(
        arch,
        lora_rank=int(cfg.lora_r),
        micro_batch=int(cfg.micro_batch_size),
        seq_len=longest,
        dtype_bytes=2 if (cfg.bf16 or cfg.fp16) else 4,
        gradient_checkpointing=bool(cfg.gradient_checkpointing),
        zero_stage=zero,
        processes=int(request.get("processes") or 1),
        cuda=cuda,
    )
    gpu = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None
    word, refuse = verdict(est, gpu)
    from mixtrain.vlm.memory import _gib

    print(
        phase_line(
            f"memory estimate per {'GPU' if cuda else 'process'}: {_gib(est.total)} GiB ({', '.join(est.lines())})"
            + (f" of {gpu:.0f} GiB — {word}" if gpu else f" — {word}")
        ),
        flush=True,
    )
    if refuse:
        raise SystemExit(
            f"mixtrain: the estimated {est.total:.1f} GiB per GPU does not fit in {gpu:.0f} GiB — {REMEDIES}"
        )
    return {
        "total_gib": round(est.total, 2),
        "parts_gib": {k: round(v, 3) for k, v in est.parts.items()},
        "gpu_gib": gpu,
        "verdict": word,
    }


def _stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": int(statistics.median(values)), "max": max(values)}


def _write(config_path: str, stats: dict) -> None:
    folder = Path(config_path).parent
    (folder / "preflight.json").write_text(json.dumps(stats, indent=2))
    report = folder / "data_report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        data["preflight"] = {k: v for k, v in stats.items() if k != "long_rows"} | {
            "long_rows": len(stats["long_rows"])
        }
        report.write_text(json.dumps(data, indent=2))
