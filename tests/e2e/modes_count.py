"""Count what each training mode trains, building the model exactly as the training process does.

``python modes_count.py OUT.json PARTS_JSON FAMILY=TINY_DIR ...``: for every family and every (--adapter,
--train_vision) pair, our fine-tune writes its Axolotl YAML (vlm/configure.py), Axolotl validates it, and the
tiny model is made trainable by Axolotl's own code — ``load_adapter`` (PEFT LoRA + modules_to_save) or
``freeze_layers_except`` (--adapter full's unfrozen_parameters) — then counted by the same report the training
writes (vlm/track.model_report). Beside it, the count expected from the bare module tree and the test's own
table of module paths (PARTS_JSON: family -> {language, tower, projector}), never from our regexes.
One process (one Axolotl import) for all of it; nothing trains.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODES = [
    ("lora", "none"),
    ("lora", "projector"),
    ("lora", "lora"),
    ("lora", "full"),
    ("full", "none"),
    ("full", "projector"),
    ("full", "full"),
]
RANK = 4


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def expected(model, parts: dict, adapter: str, train_vision: str) -> int:
    """From the module tree alone: LoRA r·(in+out) per adapted Linear, every parameter of what trains in full."""
    import torch

    lm, tower, proj = [parts["language"]], [parts["tower"]], parts["projector"]
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    params = dict(model.named_parameters())  # tied weights once

    def lora(names):
        return sum(RANK * (linears[n].in_features + linears[n].out_features) for n in names)

    def full(prefixes):
        return sum(p.numel() for n, p in params.items() if under(n, prefixes))

    lm_linear = [n for n in linears if under(n, lm)]
    # The tower's transformer blocks: Linear layers with a block index, outside the projector.
    block_linear = [
        n for n in linears if under(n, tower) and not under(n, proj) and any(s.isdigit() for s in n.split("."))
    ]
    vision_full = {"none": [], "projector": proj, "lora": proj, "full": [*tower, *proj]}[train_vision]
    if adapter == "full":
        if train_vision == "full":
            return sum(p.numel() for p in params.values())
        return full([*lm, "lm_head", *vision_full])
    return lora(lm_linear) + (lora(block_linear) if train_vision == "lora" else 0) + full(vision_full)


def main(out: str, parts_json: str, models: list[str]) -> None:
    import torch
    from axolotl.loaders.adapter import load_adapter
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.freeze import freeze_layers_except
    from transformers import AutoModelForImageTextToText

    from mixtrain.hardware import Hardware
    from mixtrain.vlm import configure, families
    from mixtrain.vlm.spec import parse_spec
    from mixtrain.vlm.track import model_report

    parts = json.loads(parts_json)
    results = []
    for arg in models:
        fam, base = arg.split("=", 1)
        config = json.loads((Path(base) / "config.json").read_text())
        family = families.get_family(fam)
        for adapter, train_vision in MODES:
            rec: dict = {"family": fam, "adapter": adapter, "train_vision": train_vision}
            try:
                lora = {"lora_r": RANK, "lora_alpha": 8, "lora_dropout": 0.0} if adapter != "full" else {}
                spec = parse_spec(
                    {
                        "dataset_name": "d",
                        "output_model_name": "m",
                        "base_model": base,
                        "model_type": fam,
                        "adapter": adapter,
                        "train_vision": train_vision,
                        **lora,
                    }
                )
                raw = configure.build_config(
                    spec,
                    family,
                    Hardware.cpu(),
                    train_jsonl=Path(out).parent / "train.jsonl",
                    output_dir=Path(out).parent / "output",
                    run_dir=Path(out).parent,
                    warn=lambda _m: None,
                    base_config=config,
                )
                cfg = validate_config(DictDefault(raw))
                torch.manual_seed(0)
                model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
                rec["expected"] = expected(model, parts[fam], adapter, train_vision)
                if cfg.adapter:
                    model, _ = load_adapter(model, cfg, cfg.adapter)
                elif cfg.unfrozen_parameters:
                    freeze_layers_except(model, cfg.unfrozen_parameters)
                report = model_report(model)
                rec.update(trainable=report["trainable_params"], by_part=report["trainable_by_part"])
            except Exception as exc:  # recorded per case; the test names it
                rec["error"] = f"{type(exc).__name__}: {exc}"
            results.append(rec)
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
