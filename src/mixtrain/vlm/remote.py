"""A fine-tune in team mode (an ``s3://`` warehouse): what crosses between machines goes through the object store.

Under ``<warehouse>/runs/<run id>/`` (``workflows.resume.run_prefix``):

- ``checkpoints/checkpoint-N/`` — every complete checkpoint the trainer saves, uploaded by the process
  that sees it appear (the run itself, or rank 0 of a Ray gang: the Hugging Face Trainer saves on global
  rank 0), manifest last (``objectstore.put_dir``): a folder with its manifest is a whole checkpoint. An
  older one is dropped once a newer one is up, as the trainer's ``save_total_limit: 1`` does locally.
  ``checkpoints.json`` beside it is the run's checkpoint declaration, so `workflow resume` on a machine
  without the run's folder knows where to look (``workflows.resume``).
- ``output/`` — a gang's trained adapter (or weights), uploaded by rank 0 (whose node the trainer wrote
  it on) and fetched by the run to register when its own disk lacks it.
- ``inputs/`` — what a gang's workers read (the Axolotl config, the prepared JSONL, the preflight request,
  the images the rows name), uploaded once by the run before the gang starts. Stored under each file's
  absolute path: a worker on a node without a shared disk downloads the folder once (``get_dir``) and
  puts every file it lacks at that same path — the paths inside the YAML and the rows stay true, so
  nothing is rewritten (``MIXTRAIN_HOME`` is the same path on every node, as the run's job sets it).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from mixtrain import objectstore
from mixtrain.errors import MixtrainError
from mixtrain.workflows.runfolder import CheckpointLayout

FILES = "files"  # the inputs folder's subfolder that mirrors absolute paths


class CheckpointUploader:
    """Uploads each complete checkpoint under ``uri`` while training runs (a thread polling the output folder).

    ``with CheckpointUploader(...):`` around the training; leaving it uploads what is left (a checkpoint
    saved in the last second). An upload that fails is said in the log and tried again on the next poll:
    the training itself never fails for it (its local checkpoints are still there)."""

    def __init__(self, output_dir: Path, layout: CheckpointLayout, uri: str, log, settings=None, interval: float = 1.0):
        self.output_dir, self.layout, self.uri, self.log = Path(output_dir), layout, uri, log
        self.settings, self.interval = settings, interval
        self.uploaded: list[int] = []  # steps, in upload order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-upload", daemon=True)
        self._warned: set[str] = set()

    def __enter__(self) -> CheckpointUploader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sweep()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()

    def sweep(self) -> None:
        """Upload every complete checkpoint not uploaded yet, oldest first; then drop the superseded ones."""
        try:
            found = self.layout.checkpoints(self.output_dir)
        except OSError:  # the output folder is being replaced or removed
            return
        for ckpt in found:
            step = self.layout.step(ckpt)
            if step in self.uploaded or (self.uploaded and step < max(self.uploaded)):
                continue
            if not self.layout.is_complete(ckpt):
                continue
            dest = objectstore.join(self.uri, ckpt.name)
            try:
                objectstore.put_dir(ckpt, dest, self.settings)
            except FileNotFoundError:  # the trainer rotated it away mid-upload: a newer one supersedes it
                self._drop(dest)
                continue
            except (MixtrainError, OSError) as exc:
                if str(exc) not in self._warned:
                    self._warned.add(str(exc))
                    self.log(f"warning: checkpoint {ckpt.name} not uploaded yet: {exc}")
                continue
            self.uploaded.append(step)
            self.log(f"checkpoint {ckpt.name} uploaded to {dest}")
            for old in self.uploaded[:-1]:
                self._drop(objectstore.join(self.uri, f"{self.layout.prefix}{old}"))
            del self.uploaded[:-1]

    def _drop(self, uri: str) -> None:
        try:
            objectstore.delete_prefix(uri + "/", self.settings)
        except (MixtrainError, OSError):
            pass


def image_paths(jsonl: Path) -> set[str]:
    """The local image files prepared rows name (``{"type": "image", "path": ABS_PATH}`` parts)."""
    found: set[str] = set()
    with open(jsonl) as fh:
        for line in fh:
            if not line.strip():
                continue
            for msg in json.loads(line).get("messages") or []:
                content = msg.get("content") if isinstance(msg, dict) else None
                for part in content if isinstance(content, list) else []:
                    if isinstance(part, dict) and part.get("type") == "image" and isinstance(part.get("path"), str):
                        found.add(part["path"])
    return found


def upload_inputs(files: list[Path], jsonls: list[Path], uri: str, settings=None) -> str:
    """Upload ``files``, the JSONLs and every image they name, each under its absolute path; ``uri``."""
    import tempfile

    paths = {str(Path(p).resolve()) for p in [*files, *jsonls] if Path(p).is_file()}
    for j in jsonls:
        if Path(j).is_file():
            paths |= {p for p in image_paths(Path(j)) if Path(p).is_file()}
    with tempfile.TemporaryDirectory(prefix="mixtrain-inputs-") as tmp:
        root = Path(tmp)
        for p in sorted(paths):  # a link farm: put_dir uploads the folder as it finds it
            dest = root / FILES / p.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                dest.hardlink_to(p)
            except OSError:
                shutil.copy2(p, dest)
        return objectstore.put_dir(root, uri, settings)


def fetch_inputs(uri: str, settings=None) -> int:
    """On a gang worker: download the inputs once and put each file this node lacks at its path; how many were placed."""
    return _place(objectstore.get_dir(uri, settings) / FILES, Path("/"))


def upload_output(output_dir: Path, uri: str, settings=None) -> str:
    """Rank 0 of a gang: the trained adapter (or weights) without the checkpoints, for the run to register."""
    return objectstore.put_dir(output_dir, uri, settings, skip_dirs=r"checkpoint-\d+")


def fetch_output(uri: str, output_dir: Path, settings=None) -> int:
    """On the run's machine: the files of rank 0's output it lacks (none with a shared disk); how many were placed."""
    return _place(objectstore.get_dir(uri, settings), Path(output_dir))


def _place(src_root: Path, dest_root: Path) -> int:
    placed = 0
    for src in sorted(p for p in src_root.rglob("*") if p.is_file()):
        rel = src.relative_to(src_root)
        if rel.as_posix() == objectstore.MANIFEST:
            continue
        dest = dest_root / rel
        if dest.is_file() and dest.stat().st_size == src.stat().st_size:
            continue  # this machine has it (a shared disk, or an earlier run)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        placed += 1
    return placed
