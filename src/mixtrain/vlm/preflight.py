"""Preflight, inside the training process before the model loads: every row through the model's real
processor and chat template, so the user learns before any GPU time is spent that

  * a row is longer than --max_seq_length *including its image tokens* (Axolotl neither truncates nor
    drops multimodal rows, and a cut would separate image tokens from image features: the infamous
    "Image features and image tokens do not match" hours in) — the run fails listing those rows, or with
    --on_long_row skip they are dropped from the training file and counted;
  * the run needs more GPU memory than there is (vlm/memory.py) — the run fails with what to change.

How rows are measured (in parallel, a sample + a length pass on very large tables): vlm/measure.py.
The recipe asks for it with ``preflight_request.json`` next to the Axolotl YAML; the result is
``preflight.json`` there (and the token statistics go into data_report.json). In a multi-process run
the first process on each node checks and, with --on_long_row skip, rewrites the training file; the
node's other processes wait for its ``preflight.json`` (same request id) and fail with its error, so
every process trains on the same rows.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from mixtrain.vlm.files import FinetuneFolder
from mixtrain.workflows.progress import phase_line

MAX_LISTED = 20


def requested(config_path: str) -> dict | None:
    path = FinetuneFolder.of_config(config_path).preflight_request
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg, raw: dict, config_path: str, request: dict) -> dict:
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1 and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return _await(config_path, request)
    try:
        return _check(cfg, raw, config_path, request)
    except SystemExit as exc:  # the verdict for the node's other processes, keeping what was measured
        path = FinetuneFolder.of_config(config_path).preflight_result
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            stats = {}
        if stats.get("request_id") != request.get("id"):
            stats = {"request_id": request.get("id")}
        _write(config_path, stats | {"error": str(exc.code)}, report=False)
        raise


def _await(config_path: str, request: dict) -> dict:
    """Another process on this node checks; wait for its verdict (torchrun ends this one if that one dies)."""
    path = FinetuneFolder.of_config(config_path).preflight_result
    while True:
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            stats = {}
        if stats.get("request_id") == request.get("id") and ("error" in stats or "memory" in stats):
            if "error" in stats:
                raise SystemExit(stats["error"])
            return stats
        time.sleep(0.2)


def _check(cfg, raw: dict, config_path: str, request: dict) -> dict:
    t0 = time.monotonic()
    from transformers import AutoProcessor

    from mixtrain.vlm.measure import measure

    proc = AutoProcessor.from_pretrained(
        cfg.base_model, trust_remote_code=bool(cfg.trust_remote_code), **(raw.get("processor_kwargs") or {})
    )
    train = Path(cfg.datasets[0]["path"])
    rows = train.read_text().splitlines()
    m = measure(proc, raw.get("chat_template_jinja"), [json.loads(r) for r in rows], image_size=cfg.image_size)
    limit = int(cfg.sequence_len)
    numbers_file = train.with_name(train.stem + "_rows.json")
    numbers = json.loads(numbers_file.read_text()) if numbers_file.is_file() else list(range(len(rows)))
    long_lines = {i for i, n in enumerate(m.lengths) if n > limit}
    long_rows = sorted((numbers[i], m.lengths[i]) for i in long_lines)  # dataset row numbers
    stats = {
        "request_id": request.get("id"),
        "rows_checked": len(rows),
        "rows_total": len(rows),
        "rows_through_processor": m.processor_rows,
        "method": m.method,
        "max_seq_length": limit,
        "image_size": cfg.image_size,
        "max_pixels": (raw.get("processor_kwargs") or {}).get("max_pixels"),
        "tokens": _stats(m.lengths),
        "image_tokens": _stats(m.image_tokens),
        "images_per_row": _stats(m.images),
        "image_tokens_per_image": _stats(m.per_image),
        "image_pixels": _stats(m.pixels),
        "long_rows": [{"row": i, "tokens": n} for i, n in long_rows],
        "long_rows_policy": request.get("on_long_row", "fail"),
    }
    if m.disagreements:
        stats["length_pass_disagreed"] = m.disagreements
    checked = f"{len(rows)} rows" + (
        "" if m.processor_rows == len(rows) else f" ({m.processor_rows} through the processor, all by length)"
    )
    print(
        phase_line(
            f"preflight: {checked} through the processor — "
            f"tokens min/median/max {stats['tokens']['min']}/{stats['tokens']['median']}/{stats['tokens']['max']}, "
            f"image tokens {stats['image_tokens']['min']}/{stats['image_tokens']['median']}/{stats['image_tokens']['max']}"
            + (
                f" (per image {stats['image_tokens_per_image']['min']}/{stats['image_tokens_per_image']['median']}/"
                f"{stats['image_tokens_per_image']['max']}, {stats['images_per_row']['max']} images in a row at most)"
                if stats["images_per_row"]["max"] > 1
                else ""
            ),
            time.monotonic() - t0,
        ),
        flush=True,
    )
    blind = [numbers[i] for i in blind_lines(m)]
    if blind:
        _write(config_path, stats)
        raise SystemExit(
            f"mixtrain: {len(blind)} rows have images but get 0 image tokens from {cfg.base_model}'s processor and chat template "
            f"(first: row {blind[0]}), so the model would never see them and training would fail on the first batch — "
            "check that --model_type matches the base model, and that its processor and chat template place its image token"
        )
    if long_rows:
        listed = ", ".join(f"row {i} ({n} tokens)" for i, n in long_rows[:MAX_LISTED]) + (
            " …" if len(long_rows) > MAX_LISTED else ""
        )
        if request.get("on_long_row") != "skip":
            _write(config_path, stats)
            raise SystemExit(
                f"mixtrain: {len(long_rows)} rows are longer than --max_seq_length {limit} with their image tokens: {listed} — "
                "raise --max_seq_length, lower --max_pixels or --image_size, or pass --on_long_row skip"
            )
        keep = [r for i, r in enumerate(rows) if i not in long_lines]
        if not keep:
            _write(config_path, stats)
            raise SystemExit(
                f"mixtrain: every row is longer than --max_seq_length {limit} with its image tokens — "
                "raise --max_seq_length or lower --max_pixels or --image_size"
            )
        tmp = train.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, train)
        print(
            phase_line(f"skipping {len(long_rows)} rows longer than {limit} tokens (--on_long_row skip): {listed}"),
            flush=True,
        )
    stats["memory"] = _memory(cfg, raw, request, max(m.lengths))
    _write(config_path, stats)
    return stats


def blind_lines(m) -> list[int]:
    """Lines of the training file whose images get no image token: the model would never see them."""
    return [i for i, (k, n) in enumerate(zip(m.image_tokens, m.images, strict=True)) if n and not k]


def _memory(cfg, raw: dict, request: dict, longest: int) -> dict:
    import torch
    from transformers import AutoConfig

    from mixtrain.vlm.memory import architecture, estimate, remedies, verdict

    config = AutoConfig.from_pretrained(cfg.base_model, trust_remote_code=bool(cfg.trust_remote_code))
    lora_r = int(cfg.lora_r or 8)  # --adapter full has no rank (no LoRA parameters are counted)
    arch = architecture(
        config,
        request["lora_target"],
        lora_r,
        full_trained=tuple(request.get("full_trained") or ()),
        unquantized=tuple(request.get("unquantized") or ()),
    )
    zero = 0
    if cfg.deepspeed:
        zero = json.loads(Path(cfg.deepspeed).read_text())["zero_optimization"]["stage"]
    cuda = torch.cuda.is_available()
    est = estimate(
        arch,
        lora_rank=lora_r,
        micro_batch=int(cfg.micro_batch_size),
        seq_len=longest,
        dtype_bytes=2 if (cfg.bf16 or cfg.fp16) else 4,
        gradient_checkpointing=bool(cfg.gradient_checkpointing),
        zero_stage=zero,
        processes=int(request.get("processes") or 1),
        cuda=cuda,
        adapter=request.get("adapter", "lora"),
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
            f"mixtrain: the estimated {est.total:.1f} GiB per GPU does not fit in {gpu:.0f} GiB — {remedies(request.get('adapter', 'lora'))}"
        )
    return {
        "total_gib": round(est.total, 4),
        "parts_gib": {k: round(v, 4) for k, v in est.parts.items()},
        "gpu_gib": gpu,
        "verdict": word,
    }


def record_measured(config_path: str, gib: float, what: str) -> None:
    """Set the memory training really took beside the preflight's estimate (preflight.json, data report, log)."""
    path = FinetuneFolder.of_config(config_path).preflight_result
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # no preflight ran (nothing to compare with)
    memory = stats.get("memory")
    if not memory:
        return
    memory.update(measured_gib=round(gib, 4), measured=what)
    from mixtrain.vlm.memory import _gib

    ratio = f", estimate/measured {memory['total_gib'] / gib:.2f}" if gib > 0 else ""
    print(
        phase_line(f"memory: estimated {_gib(memory['total_gib'])} GiB, measured {_gib(gib)} GiB ({what}){ratio}"),
        flush=True,
    )
    _write(config_path, stats)


def _stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": int(statistics.median(values)), "max": max(values)}


def _write(config_path: str, stats: dict, *, report: bool = True) -> None:
    folder = FinetuneFolder.of_config(config_path)
    tmp = folder / (folder.PREFLIGHT_RESULT + ".tmp")
    tmp.write_text(json.dumps(stats, indent=2))
    os.replace(tmp, folder.preflight_result)  # other processes poll it: never let them read half a file
    data_report = folder.data_report
    if report and data_report.is_file():
        data = json.loads(data_report.read_text())
        data["preflight"] = {k: v for k, v in stats.items() if k not in ("long_rows", "request_id")} | {
            "long_rows": len(stats["long_rows"])
        }
        data_report.write_text(json.dumps(data, indent=2))
