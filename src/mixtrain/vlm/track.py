"""Inside the training process: record every logged step in the metadata DB and keep progress.json fresh.

A ``TrainerCallback`` sees exactly what the trainer logs (loss, grad_norm, learning_rate, epoch,
eval_loss, …) as it happens — no scraping of stdout. It is handed to Axolotl as a plugin registered
in our training entry (``axolotl_main``), so the YAML stays Axolotl's own. Only the world's process
zero writes, so a multi-process run records each step once.
"""

from __future__ import annotations

import os
import sys
import time

from transformers import TrainerCallback

from mixtrain.workflows.progress import phase_line, write_progress

SUMMARY = "train_runtime"  # the trainer's closing summary log, not a step
TOKENS_PER_S = "tokens/train_per_sec_per_gpu"  # what Axolotl's token-count callback logs


class RunTracker(TrainerCallback):
    def __init__(self, run_id: int | None, run_dir: str | None, store=None, started: float | None = None):
        self.run_id, self.run_dir, self.store = run_id, run_dir, store
        self.started = started or time.monotonic()
        self.t_begin: float | None = None
        self.first_step = 0
        self.spent = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.t_begin = time.monotonic()
        self.first_step = state.global_step  # > 0 when resuming from a checkpoint
        todo = (
            f"steps {state.global_step + 1}-{state.max_steps} to train (resumed)"
            if state.global_step
            else f"{state.max_steps} steps to train"
        )
        print(phase_line(f"load model and data: {todo}", self.t_begin - self.started), flush=True)
        if kwargs.get("model") is not None and self.run_dir:
            write_model_report(kwargs["model"], self.run_dir)
        self._progress(state, {})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        t0 = time.perf_counter()
        try:
            self._on_log(state, logs)
        finally:
            self.spent += time.perf_counter() - t0  # what recording costs the training (benchmarks/bench_finetune.py)

    def _on_log(self, state, logs):
        if SUMMARY in logs:
            self._progress(state, {})
            return
        values = {k: v for k, v in logs.items() if k != "total_flos"}
        if state.epoch is not None:
            values.setdefault("epoch", state.epoch)
        if self.store is not None and self.run_id is not None:
            self._writer().put((state.global_step, values))
        self._progress(state, values)

    def _writer(self):
        """DB writes happen on a background thread: the training loop only enqueues (a step's rows are
        written within milliseconds; a SIGKILL can lose at most the steps still queued)."""
        if getattr(self, "_queue", None) is None:
            import queue
            import threading

            q: queue.Queue = queue.Queue()
            self._queue: queue.Queue | None = q

            def drain():
                while (item := q.get()) is not None:
                    self.store.record(self.run_id, *item)

            self._thread = threading.Thread(target=drain, name="mixtrain-metrics", daemon=True)
            self._thread.start()
        return self._queue

    def flush(self) -> None:
        q = getattr(self, "_queue", None)
        if q is not None:
            q.put(None)
            self._thread.join()
            self._queue = None

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()
        if state.is_world_process_zero and self.t_begin is not None:
            print(phase_line(f"train: {state.global_step} steps", time.monotonic() - self.t_begin), flush=True)

    def _progress(self, state, values: dict) -> None:
        if not self.run_dir:
            return
        elapsed = time.monotonic() - (self.t_begin or self.started)
        done = state.global_step - self.first_step
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (state.max_steps - state.global_step) / rate if rate else None
        last = getattr(self, "_last", {})
        last.update({k: v for k, v in values.items() if k in ("loss", "learning_rate", "eval_loss", "grad_norm")})
        tokens = values.get(TOKENS_PER_S)
        if tokens is not None:
            last["tokens_per_s"] = tokens
        self._last = last
        write_progress(
            self.run_dir,
            {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "epoch": state.epoch,
                "num_epochs": state.num_train_epochs,
                "steps_per_s": rate,
                "eta_s": eta,
                "elapsed_s": elapsed,
                "tracking_s": self.spent,
                **last,
            },
        )


def model_report(model) -> dict:
    """What the loaded model really trains: parameter counts by part, and which Linear layers are 4-bit.

    Read from the model the trainer was handed (after PEFT and Axolotl's freezing), so a wrong YAML cannot hide
    behind a right-looking config: the counts and the bitsandbytes ``Linear4bit`` layers (with their quant state)
    are the truth the tests and the lineage use.
    """
    from collections import Counter

    total = trainable = 0
    parts: Counter = Counter()
    for name, p in model.named_parameters():
        n = p.numel()
        total += n
        if not p.requires_grad:
            continue
        trainable += n
        bare = name.removeprefix("base_model.model.")
        head = ".".join(bare.split(".")[:2]) if bare.startswith("model.") else bare.split(".")[0]
        kind = "lora" if ".lora_" in bare else ("modules_to_save" if ".modules_to_save." in bare else "weights")
        parts[f"{kind}:{head}"] += n
    four_bit = {}
    for name, m in model.named_modules():
        # bitsandbytes' own layer (PEFT's LoRA wrapper around it is also called Linear4bit: not counted twice)
        if type(m).__name__ == "Linear4bit" and type(m).__module__.startswith("bitsandbytes"):
            q = getattr(m.weight, "quant_state", None)
            four_bit[name.removeprefix("base_model.model.")] = {
                "quant_type": getattr(q, "quant_type", None),
                "storage": str(m.weight.dtype).removeprefix("torch."),
                "shape": list(getattr(q, "shape", None) or []),
            }
    return {
        "total_params": total,
        "trainable_params": trainable,
        "trainable_by_part": dict(sorted(parts.items())),
        "linear4bit": four_bit,
    }


def write_model_report(model, run_dir: str) -> None:
    import json
    from pathlib import Path

    from mixtrain.vlm.files import FinetuneFolder

    report = model_report(model)
    FinetuneFolder(Path(run_dir)).model_report.write_text(json.dumps(report, indent=1))
    four = len(report["linear4bit"])
    print(
        phase_line(
            f"trainable parameters: {report['trainable_params']:,} of {report['total_params']:,}"
            + (f"; {four} Linear layers in 4-bit" if four else "")
        ),
        flush=True,
    )


def make_tracker(started: float | None = None) -> RunTracker:
    """The tracker for this run, from the run's environment (set by the workflow engine)."""
    run_id = os.environ.get("MIXTRAIN_RUN_ID")
    store = None
    if run_id:
        from mixtrain.settings import load_settings
        from mixtrain.workflows.metrics import MetricsStore

        store = MetricsStore(load_settings().database_url)
    return RunTracker(int(run_id) if run_id else None, os.environ.get("MIXTRAIN_RUN_DIR"), store, started)


def install(started: float | None = None) -> RunTracker:
    """Hand the tracker to Axolotl: its trainer builder asks every registered plugin for callbacks."""
    from axolotl.integrations.base import BasePlugin, PluginManager

    tracker = make_tracker(started)

    class MixtrainTracking(BasePlugin):
        def add_callbacks_pre_trainer(self, cfg, model):
            return [tracker]

    PluginManager.get_instance().plugins["mixtrain.vlm.track"] = MixtrainTracking()
    sys.stdout.flush()
    return tracker
