"""W&B without a key: the run logs offline into its folder and says so.

Secret redaction is tested where a secret is actually printed (tests/cli/test_cli_workflow_reliability.py
plants a workflow that prints one): here nothing would print it, so a scan for it could not fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import colour_dataset


@pytest.mark.e2e
def test_wandb_offline_and_secrets_stay_out(e2e, tiny_models):
    colour_dataset(e2e, "wandb-shapes", n=4)
    res = e2e.mix(
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "wandb-shapes",
        "--output_model_name",
        "wandb-qwen",
        "--base_model",
        tiny_models["qwen2_vl"],
        "--model_type",
        "qwen2_vl",
        "--wandb_project",
        "my-vlm-experiments",
        "--max_steps",
        "2",
        "--batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        check=0,
    )
    assert "W&B: no WANDB_API_KEY secret — logging offline" in res.stdout
    run_dir = Path(e2e.last_run()["run_dir"])
    yaml_text = (run_dir / "axolotl.yml").read_text()
    assert "wandb_project: my-vlm-experiments" in yaml_text and "wandb_mode: offline" in yaml_text
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B wrote no offline run"
    assert "wandb_api_key" not in yaml_text.lower() and "WANDB_API_KEY" not in yaml_text
