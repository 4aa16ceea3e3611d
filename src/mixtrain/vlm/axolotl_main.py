"""Our entry into Axolotl, run as the training process: ``python -m mixtrain.vlm.axolotl_main train|validate CONFIG...``.

Why not ``python -m axolotl.cli.train`` directly: Axolotl's schema silently drops keys it does not
know, so we validate in the same interpreter that trains (one Axolotl import) and refuse a config
whose keys were dropped; and on CPU-only multi-process runs Axolotl pins each rank to a CUDA device,
which we put back on the CPU after its config is normalised. Everything else is Axolotl's own path.
"""

from __future__ import annotations

import os
import sys
import time

import yaml

STARTED = time.monotonic()

# Keys Axolotl consumes or rewrites during validation/normalisation (legitimately absent afterwards).
CONSUMED = {"processor_kwargs", "chat_template_jinja"}


def dropped_keys(raw: dict, validated) -> list[str]:
    return sorted(k for k in raw if k not in validated and k not in CONSUMED and raw[k] is not None)


def load(path: str, capabilities: dict | None = None):
    """Load + validate + normalise exactly as ``axolotl train`` does; refuse silently dropped keys."""
    from axolotl.cli.config import load_cfg
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    from mixtrain.vlm import axolotl_support

    axolotl_support.register()  # our strategies for families Axolotl's own break on (before any lookup)

    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if capabilities is not None:  # validating for another machine (golden tests of GPU configs)
        cfg = validate_config(
            DictDefault(dict(raw)), capabilities=capabilities, env_capabilities={"torch_version": "2.13.0"}
        )
    else:
        cfg = load_cfg(path)
    lost = dropped_keys(raw, cfg)
    if lost:
        raise SystemExit(f"mixtrain: Axolotl dropped config keys {lost} from {path} — a mixtrain bug, please report it")
    return cfg


# What our templates render around an answer (templates/llava.jinja, templates/llava_mistral.jinja).
SAMPLES = {
    "ASSISTANT:": "USER: <image>\nWhat is in the image? ASSISTANT: a red circle",
    "[/INST]": "[INST] <image>\nWhat is in the image? [/INST] a red circle",
}


def resolve_role_boundaries(cfg) -> list:
    """Make the answer-start marker match how this tokenizer splits it in context, and dodge a 0.19 bug.

    The marker is matched on token ids, so " ASSISTANT:" (byte-level BPE) and "ASSISTANT:"
    (sentencepiece, which adds its own word-start) are not interchangeable: a marker that never
    matches masks every label and nothing trains. Axolotl 0.19 also crashes on its own validated
    entries (a DictDefault's missing ``model_dump`` reads as None and is called); read-only mappings
    are neither re-wrapped by DictDefault nor mistaken for pydantic models.
    """
    from types import MappingProxyType

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.base_model, trust_remote_code=bool(cfg.trust_remote_code))
    out = []
    for spec in (dict(b) for b in cfg.role_boundaries):
        word = spec["start"].strip()
        ids = tok(SAMPLES[word], add_special_tokens=False).input_ids
        for candidate in (spec["start"], " " + word, word):
            marker = tok.encode(candidate, add_special_tokens=False)
            if marker and _contains(ids, marker):
                spec["start"] = candidate
                break
        else:
            raise SystemExit(
                f"mixtrain: the answer marker {word!r} does not tokenise consistently with {cfg.base_model}'s tokenizer; refusing to train on masked labels"
            )
        out.append(MappingProxyType({k: v for k, v in spec.items() if v is not None}))
    return out


def _contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def _preflight(cfg, path: str) -> None:
    from mixtrain.vlm import preflight

    request = preflight.requested(path)
    if request is None:
        return
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    preflight.run(cfg, raw, path, request)


def seed_everything(seed) -> None:
    """Seed Python, NumPy and torch before the model loads.

    Why two CPU runs with the same --seed differed: Axolotl never seeds before it builds the model,
    and the HF Trainer seeds only in its constructor — after PEFT has drawn the LoRA A matrices
    (Kaiming-uniform) from an unseeded generator. Every run started from different adapter weights.
    """
    from transformers import set_seed

    set_seed(int(seed if seed is not None else 42))


def main(argv: list[str]) -> int:
    mode, paths = argv[0], argv[1:]
    from mixtrain.models import _fastimport

    _fastimport.enable()  # this process is ours: Axolotl's stack without the integrations training never uses
    _fastimport.import_training_stack()
    if mode == "validate":
        import json

        # Capabilities of the machine the configs are for (default: this one). `--capabilities=JSON` applies to
        # the configs after it, so one Axolotl import validates configs for several machines; `--capabilities=`
        # switches back to this machine.
        caps = (
            json.loads(os.environ["MIXTRAIN_VALIDATE_CAPABILITIES"])
            if os.environ.get("MIXTRAIN_VALIDATE_CAPABILITIES")
            else None
        )
        for path in paths:
            if path.startswith("--capabilities="):
                caps = json.loads(path.partition("=")[2] or "null")
                continue
            cfg = load(path, caps)
            print(f"axolotl config OK: {path}", flush=True)
            _preflight(cfg, path)  # a dry run checks every row too
        return 0
    if mode != "train" or len(paths) != 1:
        raise SystemExit(
            "usage: python -m mixtrain.vlm.axolotl_main train CONFIG | validate [--capabilities=JSON] CONFIG..."
        )
    cfg = load(paths[0])
    if cfg.get("role_boundaries"):
        cfg.role_boundaries = resolve_role_boundaries(cfg)
    import torch

    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cfg.device_map = "cpu"  # Axolotl set {"": LOCAL_RANK} (a CUDA index); gloo DDP trains on CPU
    _preflight(cfg, paths[0])  # (in a multi-process run, the first process on each node checks; vlm/preflight.py)
    seed_everything(cfg.seed)
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.train import do_train

    from mixtrain.vlm import track
    from mixtrain.vlm.memory import PeakMeter

    tracker = track.install(STARTED)
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    meter = PeakMeter()  # from here: the model, its data and the training the estimate was for
    do_train(cfg, TrainerCliArgs())
    tracker.flush()  # every recorded step is in the DB before this process exits (it may skip teardown below)
    if rank == "0":
        from mixtrain.vlm.preflight import record_measured

        record_measured(paths[0], *meter.measured())
    # One line per training process: the log shows which ranks trained to the end.
    print(f"mixtrain: training process rank {rank} of {world} finished", flush=True)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not cfg.get("use_wandb"):
        # The adapter is saved and nothing is left to flush: skip the ~2 s interpreter teardown of
        # torch/transformers/axolotl (W&B and distributed runs keep their atexit hooks).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
