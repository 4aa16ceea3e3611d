"""What the watch/resume/eval inputs change in the Axolotl config, and the held-out draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixtrain.errors import InvalidInput
from mixtrain.hardware import Hardware
from mixtrain.vlm import configure, families
from mixtrain.vlm.prepare import _held_out
from mixtrain.vlm.spec import parse_spec

BASE = {"dataset_name": "d", "output_model_name": "m"}


def build(**params):
    spec = parse_spec({**BASE, **params})
    return configure.build_config(
        spec,
        families.get_family("llava"),
        Hardware.cpu(),
        train_jsonl=Path("/r/train.jsonl"),
        eval_jsonl=Path("/r/eval.jsonl") if params.get("val_set_size") or params.get("eval_dataset_name") else None,
        output_dir=Path("/r/out"),
        run_dir=Path("/r"),
        warn=lambda m: None,
    )


def test_save_steps_checkpoints_every_n_steps():
    assert build()["save_strategy"] == "epoch"
    cfg = build(save_steps=5, max_steps=20)
    assert (cfg["save_strategy"], cfg["save_steps"], cfg["max_steps"]) == ("steps", 5, 20)


def test_eval_each_epoch_or_every_n_steps():
    assert "test_datasets" not in build() and "eval_strategy" not in build()
    cfg = build(val_set_size=0.1)
    assert cfg["eval_strategy"] == "epoch" and cfg["test_datasets"][0]["path"] == "/r/eval.jsonl"
    assert cfg["test_datasets"][0]["type"] == "chat_template" and cfg["val_set_size"] == 0  # we split, not Axolotl
    cfg = build(eval_dataset_name="held", eval_steps=3)
    assert (cfg["eval_strategy"], cfg["eval_steps"]) == ("steps", 3)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"val_set_size": 0.9}, "--val_set_size: Input should be less than or equal to 0.5"),
        ({"val_set_size": -1}, "--val_set_size: Input should be greater than or equal to 0"),
        ({"save_steps": -5}, "--save_steps: Input should be greater than or equal to 0"),
        ({"eval_steps": -1}, "--eval_steps: Input should be greater than or equal to 0"),
        ({"eval_dataset_name": "Bad.Name"}, "invalid dataset name 'Bad.Name'"),
        ({"val_set_size": 0.2, "eval_dataset_name": "other"}, "pass only one"),
        ({"image_size": 0}, "--image_size: Input should be greater than or equal to 28"),
        ({"image_size": 9000}, "--image_size: Input should be less than or equal to 8192"),
        ({"image_size": "big"}, "--image_size: Input should be a valid integer"),
        ({"max_pixels": 0}, "--max_pixels: Input should be greater than 0"),
        ({"on_long_row": "maybe"}, "--on_long_row: Input should be 'fail' or 'skip'"),
    ],
)
def test_bad_eval_and_save_inputs(params, message):
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_spec({**BASE, **params})


def test_image_size_goes_to_axolotl_and_the_image_to_an_images_column():
    """Axolotl pads to ``image_size`` only images given in an ``images`` column (beside a bare placeholder)."""
    from mixtrain.vlm.prepare import to_messages

    assert build(image_size=448)["image_size"] == 448 and "image_size" not in build()
    plain, column = to_messages("/i.png", "q", "a"), to_messages("/i.png", "q", "a", image_column=True)
    assert plain["messages"][0]["content"][0] == {"type": "image", "path": "/i.png"} and "images" not in plain
    assert column["messages"][0]["content"][0] == {"type": "image"} and column["images"] == ["/i.png"]


def test_held_out_rows_follow_the_seed():
    usable = [i for i in range(100) if i % 7]  # bad rows are never held out
    a = _held_out(usable, parse_spec({**BASE, "val_set_size": 0.2, "seed": 1}))
    assert a == _held_out(usable, parse_spec({**BASE, "val_set_size": 0.2, "seed": 1}))
    assert a != _held_out(usable, parse_spec({**BASE, "val_set_size": 0.2, "seed": 2}))
    assert len(a) == round(len(usable) * 0.2) and a <= set(usable)
    assert _held_out(usable, parse_spec(BASE)) == set()
    with pytest.raises(InvalidInput, match="leaves no training rows"):
        _held_out([0], parse_spec({**BASE, "val_set_size": 0.5}))
