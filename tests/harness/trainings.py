"""The session's shared trainings: each tiny family fine-tuned once (real Axolotl, 3 steps) on first use
of any of them (all four then, two at a time: see harness/parallel.py).

Tests that only need a trained adapter (the family checks, merged export, W&B offline) read these runs
instead of training again. The fixture is `families` (tests/e2e/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.cli import Mix
from harness.data import colour_dataset
from harness.models import TRAIN_ARGS
from harness.parallel import run_all, run_number

# (family folder, the --model_type a user passes, the family mixtrain must use)
FAMILY_CASES = [
    ("llava", "llava", "llava"),
    ("llava_next", "llava", "llava_next"),  # the spec passes --model_type llava for LLaVA-1.6
    ("qwen2_vl", "qwen2_vl", "qwen2_vl"),
    ("qwen2_5_vl", "qwen2_vl", "qwen2_vl"),
]
# The W&B check rides on this family's run: a project given, no key stored -> offline logging.
WANDB_FAMILY, WANDB_PROJECT = "qwen2_vl", "my-vlm-experiments"


@dataclass
class FamilyRun:
    folder: str
    model_type: str
    family: str
    dataset: str
    snapshot: str
    model: str
    stdout: str
    run: dict  # `workflow runs` row of the training, read right after it ended
    log: str  # the run's full log

    def test_image(self, env: Mix) -> Path:
        return sorted((env.root / f"task-{self.dataset}" / "images").glob("test_*.png"))[0]


class FamilyTrainings:
    """One home where each family is fine-tuned once per session (3 steps, real Axolotl).

    ``train_all`` (or the first use of any family) trains every one of them, two at a time (independent runs
    in one home, as concurrent users would start them); the run numbers are therefore in no fixed order.
    """

    def __init__(self, env: Mix, tiny_models: dict[str, Path]):
        self.env, self.tiny_models = env, tiny_models
        self.runs: dict[str, FamilyRun | BaseException] = {}

    def train_all(self) -> None:
        todo = [c[0] for c in FAMILY_CASES if c[0] not in self.runs]
        snapshots = {f: self._dataset(f) for f in todo}  # the datasets first, one after the other
        trained = run_all([lambda f=f: self._attempt(f, snapshots[f]) for f in todo])
        self.runs.update(zip(todo, trained, strict=True))

    def __getitem__(self, folder: str) -> FamilyRun:
        if folder not in self.runs:
            self.train_all()
        got = self.runs[folder]
        if isinstance(got, BaseException):  # a family's failure fails the tests of that family only
            raise got
        return got

    def _attempt(self, folder: str, snapshot: str) -> FamilyRun | BaseException:
        try:
            return self._train(folder, snapshot)
        except Exception as exc:  # AssertionError included
            return exc

    def _dataset(self, folder: str) -> str:
        dataset = f"shapes-{folder.replace('_', '-')}"
        colour_dataset(self.env, dataset)
        return self.env.json("dataset", "get", dataset)["version"]

    def _train(self, folder: str, snapshot: str) -> FamilyRun:
        _, model_type, family = next(c for c in FAMILY_CASES if c[0] == folder)
        env, dataset, model = self.env, f"shapes-{folder.replace('_', '-')}", f"tuned-{folder.replace('_', '-')}"
        extra = ["--wandb_project", WANDB_PROJECT] if folder == WANDB_FAMILY else []
        res = env(
            "workflow",
            "run",
            "vlm-finetune",
            "--dataset_name",
            dataset,
            "--output_model_name",
            model,
            "--base_model",
            self.tiny_models[folder],
            "--model_type",
            model_type,
            *TRAIN_ARGS,
            *extra,
            check=0,
        )
        number = run_number(res.stdout)
        run = next(r for r in env.json("workflow", "runs", "vlm-finetune", "-n", "1000") if r["number"] == number)
        return FamilyRun(
            folder, model_type, family, dataset, snapshot, model, res.stdout, run, env.run_log(number=run["number"])
        )
