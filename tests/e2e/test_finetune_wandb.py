"""W&B without a key: the run logs offline into its folder and says so.

The run is the session's shared qwen2_vl family training (conftest.py gives it `--wandb_project`).
Secret redaction is tested where a secret is actually printed (tests/cli/test_cli_workflow_reliability.py
plants a workflow that prints one): here nothing would print it, so a scan for it could not fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.trainings import WANDB_FAMILY, WANDB_PROJECT


@pytest.mark.e2e
def test_wandb_offline_and_secrets_stay_out(families):
    trained = families[WANDB_FAMILY]
    assert "W&B: no WANDB_API_KEY secret — logging offline" in trained.stdout
    run_dir = Path(trained.run["run_dir"])
    yaml_text = (run_dir / "axolotl.yml").read_text()
    assert f"wandb_project: {WANDB_PROJECT}" in yaml_text and "wandb_mode: offline" in yaml_text
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B wrote no offline run"
    assert "wandb_api_key" not in yaml_text.lower() and "WANDB_API_KEY" not in yaml_text
