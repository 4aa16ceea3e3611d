"""The attached view of a run: its log, minus the trainer's verbose stream, plus one live progress line.

Phase lines ("● ...") and everything outside a trainer section are printed as they come. Inside a
section (see ``mixtrain.workflows.progress``) the trainer's own output goes only to the run log; the
view shows step/total, epoch, loss, learning rate, tokens/s and ETA from ``progress.json``: a rich
progress bar on a terminal, or on a pipe one line every 10 s or 5% of the steps, whichever is rarer.
If the run does not complete, the last hidden lines are printed, so an error is never hidden.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

from mixtrain.workflows.progress import PHASE, SECTION_BEGIN, SECTION_END, read_progress

PIPE_EVERY_S = 10.0
PIPE_EVERY_FRACTION = 0.05
TAIL_ON_FAILURE = 25


def describe(p: dict) -> str:
    parts = []
    if p.get("epoch") is not None:
        parts.append(f"epoch {p['epoch']:.2f}/{p.get('num_epochs') or '?'}")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4f}")
    if p.get("eval_loss") is not None:
        parts.append(f"eval {p['eval_loss']:.4f}")
    if p.get("learning_rate") is not None:
        parts.append(f"lr {p['learning_rate']:.2e}")
    if p.get("tokens_per_s"):
        parts.append(f"{p['tokens_per_s']:.0f} tok/s")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {_dur(p['eta_s'])}")
    return " · ".join(parts)


def _dur(seconds: float) -> str:
    seconds = int(seconds)
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class CompactView:
    """A ``write(bytes)``/``flush()`` sink for ``runner.follow`` plus its ``on_tick``."""

    def __init__(self, run_dir: Path, stream=None, tty: bool | None = None):
        self.run_dir = Path(run_dir)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.partial = b""
        self.hidden = False
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_ON_FAILURE)
        self.bar: Any = None  # a rich Progress once the first step arrives on a terminal
        self.task: Any = None
        self.last_step: int | None = None
        self.last_print = 0.0
        self.lines = 0

    # -- the log stream ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        *lines, self.partial = (self.partial + data).split(b"\n")
        for raw in lines:
            self._line(raw.decode(errors="replace"))

    def flush(self) -> None:
        self.stream.flush()

    def _line(self, line: str) -> None:
        text = line.rstrip("\r")
        if text == SECTION_BEGIN:
            self.hidden = True
            self.tail.clear()
            return
        if text == SECTION_END:
            self._progress(final=True)
            self._stop_bar()
            self.hidden = False
            return
        if not self.hidden:
            self._print(text)
            return
        at = text.find(PHASE)  # a phase line may follow a progress bar's \r without a newline
        if at >= 0:
            self._print(text[at:])
            return
        self.tail.extend(seg for seg in text.split("\r") if seg.strip())

    def _print(self, text: str) -> None:
        self.lines += 1
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    # -- progress ------------------------------------------------------------------------------------
    def tick(self, run=None) -> None:
        if self.hidden:
            self._progress()

    def _progress(self, final: bool = False) -> None:
        p = read_progress(self.run_dir)
        if not p or not p.get("max_steps"):
            return
        step, total = int(p["step"]), int(p["max_steps"])
        if self.tty:
            if self.bar is None:
                self._start_bar(total)
            self.bar.update(self.task, completed=step, total=total, info=describe(p))
            return
        now = time.monotonic()
        if step == self.last_step:
            return
        due = self.last_step is None or (
            now - self.last_print >= PIPE_EVERY_S and step - self.last_step >= PIPE_EVERY_FRACTION * total
        )
        if due or (final or step >= total):
            self.last_step, self.last_print = step, now
            self._print(f"  step {step}/{total} ({100 * step // total}%) · {describe(p)}")

    def _start_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn("  training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=self.stream),
            transient=False,
        )
        self.task = self.bar.add_task("train", total=total, info="")
        self.bar.start()

    def _stop_bar(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def close(self, final: dict) -> None:
        """After the run: flush what is left; if it did not complete, show the hidden lines that explain why."""
        if self.partial:
            self._line(self.partial.decode(errors="replace"))
            self.partial = b""
        self._stop_bar()
        if final.get("status") != "completed" and self.tail:
            self._print(
                f"--- last {len(self.tail)} lines of the trainer output (all of it: mixtrain workflow logs {final.get('workflow')} {final.get('number')}) ---"
            )
            for text in self.tail:
                self._print(text)
            self.tail.clear()
