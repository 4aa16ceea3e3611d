"""The fine-tune's files in its run folder, and what one of its checkpoints is — named once.

The engine's own files (log, output, progress, checkpoint declaration) are named by
``workflows.runfolder.RunFolder``; this adds the fine-tune's. The recipe declares its data report and
its Axolotl config to the engine (``RunFolder.declare``) so the dashboard shows them without knowing
these names, and declares ``HF_TRAINER_CHECKPOINT`` so `workflow resume` knows a complete checkpoint
without knowing the Hugging Face Trainer.
"""

from __future__ import annotations

from pathlib import Path

from mixtrain.workflows.runfolder import CheckpointLayout, RunFolder

# What the HF Trainer writes into checkpoint-N, trainer_state.json last (transformers' _save_checkpoint).
HF_TRAINER_CHECKPOINT = CheckpointLayout(
    files=("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"),
    state_file="trainer_state.json",
    step_key="global_step",
)

# --adapter full: the checkpoint holds the model's own weights, not an adapter.
HF_TRAINER_FULL_CHECKPOINT = CheckpointLayout(
    files=("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"),
    state_file="trainer_state.json",
    step_key="global_step",
)


class FinetuneFolder(RunFolder):
    """A fine-tune's run folder (the Axolotl YAML's folder: the training process finds its requests beside it)."""

    DATA_REPORT = "data_report.json"
    AXOLOTL_CONFIG = "axolotl.yml"
    PREFLIGHT_REQUEST = "preflight_request.json"
    PREFLIGHT_RESULT = "preflight.json"
    AXOLOTL_DEBUG = "axolotl_debug.log"
    MODEL_REPORT = "trained_parameters.json"  # what the training process really trained (track.py)

    @classmethod
    def of_config(cls, config_path: Path | str) -> FinetuneFolder:
        """The folder of a run, from inside the training process (which is handed the YAML's path)."""
        return cls(Path(config_path).parent)

    @property
    def data_report(self) -> Path:
        return self.path / self.DATA_REPORT

    @property
    def axolotl_config(self) -> Path:
        return self.path / self.AXOLOTL_CONFIG

    @property
    def preflight_request(self) -> Path:
        return self.path / self.PREFLIGHT_REQUEST

    @property
    def preflight_result(self) -> Path:
        return self.path / self.PREFLIGHT_RESULT

    @property
    def axolotl_debug(self) -> Path:
        return self.path / self.AXOLOTL_DEBUG

    @property
    def model_report(self) -> Path:
        return self.path / self.MODEL_REPORT

    def deepspeed(self, preset: str) -> Path:
        return self.path / f"deepspeed_{preset}.json"

    def split(self, name: str) -> Path:
        """A prepared split's JSONL (train.jsonl, eval.jsonl)."""
        return self.path / f"{name}.jsonl"
