"""Bad inputs to the fine-tune are refused in the CLI process, before a run record, supervisor or worker exists.

The checks are the run's own (the FinetuneSpec model the workflow declares), so what the run would
refuse after minutes of setup is refused here at once; `workflow runs` stays empty.
"""

from __future__ import annotations

import json

import pytest

from harness import EXAMPLES, Mix

CASES = [
    (["--batch_size", "0"], "--batch_size: Input should be greater than or equal to 1"),
    (["--num_epochs", "-1"], "--num_epochs"),
    (["--learning_rate", "0"], "--learning_rate"),
    (["--lora_dropout", "1.5"], "--lora_dropout"),
    (["--max_seq_length", "10"], "--max_seq_length"),
    (["--deepspeed_config", "zero1"], "zero2, zero3"),
    (["--on_bad_image", "maybe"], "--on_bad_image"),
    (["--output_model_name", "Bad Name"], "--output_model_name"),
    (["--image_column", "  "], "--image_column: must not be empty"),
    (["--seed", "-3"], "--seed"),
    (["--use_flash_attention", "maybe"], "--use_flash_attention"),
    (["--num_epochs", "2.5"], "--num_epochs"),
    # Training modes (#19 §2): combinations that cannot train are refused before anything loads.
    (["--adapter", "full", "--train_vision", "lora"], "--adapter full trains weights, not adapters"),
    (["--adapter", "full", "--lora_r", "16"], "--lora_r set, but --adapter full trains no LoRA"),
    (["--adapter", "qlora4"], "--adapter: Input should be 'lora', 'qlora' or 'full'"),
    (["--train_vision", "tower"], "--train_vision: Input should be 'none', 'projector', 'lora' or 'full'"),
]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    mix = Mix(EXAMPLES, tmp_path_factory.mktemp("prerun") / "home")
    mix("workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune", check=0)
    return lambda *args: mix(*args, timeout=120)


@pytest.mark.parametrize("extra,fragment", CASES, ids=[c[0][0] + "=" + c[0][1] for c in CASES])
def test_bad_input_creates_no_run(registered, extra, fragment):
    proc = registered("workflow", "run", "vlm-finetune", "--dataset_name", "d", "--output_model_name", "m", *extra)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert fragment in proc.stderr and proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    assert json.loads(registered("workflow", "runs", "vlm-finetune", "--json").stdout) == []


def test_help_shows_choices_and_bounds(registered):
    out = registered("workflow", "run", "vlm-finetune", "--help").stdout
    assert "int (≥ 1)" in out and "float (≥ 0, < 1)" in out and "(''|zero2|zero3)" in out and "(fail|skip)" in out
