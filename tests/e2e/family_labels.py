"""Which tokens carry loss, as Axolotl's own multimodal path labels them for our config of a family.

Run as a script (it imports Axolotl, which patches libraries: keep it out of the pytest process):

    python family_labels.py IMAGE OUT_DIR FAMILY=BASE_MODEL...

Builds the Axolotl YAML exactly as a fine-tune does (configure.build_config), loads it the way the
training process does (axolotl_main.load + our role-boundary resolution), then builds the processing
strategy and the collator the way Axolotl's trainer builder does, on one prepared row (system, user
with an image, assistant answer). Writes OUT_DIR/FAMILY.labels.json per family (one Axolotl import for
them all): the trained tokens' text and ids, and the row's text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(base: str, family_name: str, image: str, out_dir: str) -> dict:
    from mixtrain.hardware import Hardware
    from mixtrain.vlm import axolotl_main, configure, families
    from mixtrain.vlm.spec import parse_spec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    family = families.get_family(family_name)
    row = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "path": image}, {"type": "text", "text": "What colour is it?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "red circle"}]},
        ]
    }
    train = out / "train.jsonl"
    train.write_text(json.dumps(row) + "\n")
    spec = parse_spec({"dataset_name": "d", "output_model_name": "m", "base_model": base, "model_type": family_name})
    cfg = configure.build_config(
        spec, family, Hardware.cpu(), train_jsonl=train, output_dir=out / "o", run_dir=out, warn=lambda m: None
    )
    path = configure.write_yaml(cfg, out / "axolotl.yml")
    cfg = axolotl_main.load(str(path))
    if cfg.get("role_boundaries"):
        cfg.role_boundaries = axolotl_main.resolve_role_boundaries(cfg)

    from axolotl.loaders import load_processor, load_tokenizer
    from axolotl.processing_strategies import get_processing_strategy
    from axolotl.utils.chat_templates import get_chat_template_from_config
    from axolotl.utils.collators.mm_chat import MultiModalChatDataCollator

    tokenizer = load_tokenizer(cfg)
    processor = load_processor(cfg, tokenizer)
    strategy = get_processing_strategy(
        processor,
        get_chat_template_from_config(cfg=cfg, tokenizer=tokenizer),
        cfg.chat_template,
        image_size=cfg.image_size,
        train_on_inputs=bool(cfg.train_on_inputs),
        role_boundaries_override=list(cfg.role_boundaries) if cfg.role_boundaries else None,
        field_messages=["messages"],
        model_type=cfg.model_config_type,
    )
    batch = MultiModalChatDataCollator(tokenizer, strategy)([row])
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0].tolist()
    trained = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
    return {
        "strategy": type(strategy).__name__,
        "trained_ids": trained,
        "trained_text": tokenizer.decode(trained),
        "row_text": tokenizer.decode(ids),
    }


if __name__ == "__main__":
    image, out_dir = sys.argv[1:3]
    for arg in sys.argv[3:]:
        name, _, base = arg.partition("=")
        try:
            result = main(base, name, image, f"{out_dir}/{name}")
        except Exception as exc:  # one family's failure is its own test's failure
            result = {"error": f"{type(exc).__name__}: {exc}"}
        (Path(out_dir) / f"{name}.labels.json").write_text(json.dumps({"family": name, **result}))
