"""Small files and datasets for tests."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def colour_dataset(mix, name: str, n: int = 16, size: int = 64) -> Path:
    """A colour-task dataset of ``n`` rows created through the CLI as ``name``; returns its CSV."""
    from mixtrain.testing.colour_task import make_task

    info = make_task(mix.root / f"task-{name}", n_train=n, n_test=4, size=size)
    mix("dataset", "create", name, "--file", info["train_csv"], check=0)
    return info["train_csv"]
