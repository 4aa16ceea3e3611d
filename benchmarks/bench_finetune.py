"""What the fine-tune workflow adds to an Axolotl run, side by side with raw Axolotl in the same run.

    .venv/bin/python benchmarks/bench_finetune.py [--family qwen2_vl|llava|qwen3_vl|gemma3|…|F1,F2|both|newer|all] [--runs 3] [--steps 8] [--threads N] [--keep]

Setup (untimed), per family: a tiny random model (``python -m mixtrain.testing.tiny_vlm``), a 16-row
colour dataset (``mixtrain dataset create``) and the spec's workflow (``mixtrain workflow create``), all
in a fresh temporary ``MIXTRAIN_HOME``. Then, interleaved (A, B, A, B, ...), each a fresh process:

  A  ``mixtrain workflow run vlm-finetune ... --max_steps 8 --batch_size 2`` — the whole command:
     reading the dataset, verifying images, writing the JSONL, building + validating the YAML,
     training, registering the model.
  B  raw Axolotl, ``axolotl.cli.train`` run as ``python -m`` runs it (``runpy``, ``__main__``), on the
     YAML run A #1 generated (its ``axolotl.yml``, same ``train.jsonl``), with ``output_dir`` and
     ``dataset_prepared_path`` pointed at fresh folders.
     - qwen2_vl: exactly A's YAML.
     - llava: A's YAML with Axolotl's OWN ``chat_template: llava`` instead of ours (ours ends the answer
       with EOS and sets ``role_boundaries`` so only the answer is trained — 0.19.0 crashes on that key
       without our launcher's fix). So B trains on prompt tokens too, with a template that never
       teaches the model to stop: same data and steps, not the same labels. Stated in the output.

Interpreter teardown, compared like with like: our trainer process ends with ``os._exit(0)`` once the
adapter is saved (skipping ~2 s of torch/transformers/axolotl teardown); plain ``python -m
axolotl.cli.train`` pays it. B therefore prints a marker line when Axolotl's ``main`` returns and then
exits normally: the headline ratio compares A with B up to that marker (both skip the teardown), and
B's teardown is reported on its own line, with the ratio against B's whole wall time beside it.

Both sides get the same environment (offline, no telemetry, W&B disabled, as the workflow's trainer
gets). Prints min/median/max per side, the ratio A/B (target <= 1.05) and where A's time goes, from
the arrival time of marker lines in each command's output. Prints numbers only; asserts nothing.

On a CPU shared with other work, torch's default intra-op threads (one per core) oversubscribe the
cores and tiny-model training steps slow down by up to ~10x; ``--threads 1`` (OMP_NUM_THREADS for both
sides) gives steadier figures there. The default leaves it unset, as a user's run would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import EXAMPLES, MIXTRAIN, REPO, timed, workspace

# Marker lines (substring → phase boundary name), in the order they appear.
A_MARKS = [
    ("▶ run #", "supervisor wrote the run header"),
    ("training examples to", "prepare done (dataset read, images verified, JSONL written)"),
    ("Single GPU mode", "config built, trainer about to start"),
    # The attached view hides the trainer's own lines; our tracker prints these at the trainer's begin/end.
    ("● load model and data", "trainer: Axolotl imported, cfg/model/data loaded"),
    ("● train:", "trainer: training done (adapter not yet saved)"),
    ("registered model", "trainer exited, model registered"),
    ("■ run #", "supervisor closed the run"),
]
RETURNED = "BENCH: axolotl main returned"
B_MARKS = [
    ("Starting trainer", "trainer: Axolotl imported, cfg/model/data loaded"),
    ("Model successfully saved", "trainer: training done, adapter saved"),
    (RETURNED, "Axolotl's main returned (teardown follows)"),
]
# Raw Axolotl exactly as ``python -m axolotl.cli.train CFG`` runs it, plus one marker line when its main
# returns, so B's interpreter teardown can be timed apart (the process then exits normally and pays it).
RAW_TRAIN = (
    "import runpy, sys\n"
    "sys.argv = ['axolotl.cli.train', sys.argv[1]]\n"
    "try:\n    runpy.run_module('axolotl.cli.train', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
    f"print({RETURNED!r}, flush=True)\n"
    "sys.exit(code)\n"
)
# The newer families (one row each). Where Axolotl 0.19's own processing strategy crashes (SmolVLM2, InternVL)
# or claims no role boundaries (Mistral 3 with our fixed-date template, GLM-4.1V, LFM2-VL), B registers mixtrain's
# strategies (vlm/axolotl_support.py) before running Axolotl's main, as our trainer does: same YAML, same labels.
NEWER = ("qwen3_vl", "gemma3", "mllama", "smolvlm", "internvl", "mistral3", "pixtral", "glm4v", "lfm2_vl", "qwen3_5")
OUR_STRATEGY = ("smolvlm", "internvl", "mistral3", "glm4v", "lfm2_vl")
RAW_TRAIN_OUR_STRATEGY = "from mixtrain.vlm import axolotl_support\naxolotl_support.register()\n" + RAW_TRAIN
# Keys of our YAML that only our template path uses; the raw LLaVA side uses Axolotl's own template.
OUR_TEMPLATE_KEYS = ("chat_template_jinja", "role_boundaries")


def timed_stream(cmd, env, cwd, marks, log_path: Path) -> tuple[float, dict[str, float]]:
    """Run ``cmd``; wall seconds, and the seconds (from start) at which each marker line first arrived."""
    seen: dict[str, float] = {}
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            now = time.perf_counter() - t0
            log.write(raw)
            line = raw.decode(errors="replace")
            for marker, _ in marks:
                if marker not in seen and marker in line:
                    seen[marker] = now
        code = proc.wait()
    took = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd))} failed ({code}); output in {log_path}:\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return took, seen


def _check(cmd, env, cwd) -> str:
    return timed(cmd, env, cwd)[1].stdout


def summary(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def raw_config(base_cfg: dict, family: str) -> tuple[dict, str]:
    """B's YAML from A's, and one line saying how it differs."""
    cfg = dict(base_cfg)
    if family == "llava":
        for key in OUR_TEMPLATE_KEYS:
            cfg.pop(key, None)
        cfg["chat_template"] = "llava"
        return (
            cfg,
            "A's YAML with Axolotl's own `chat_template: llava` (no EOS after the answer, trains on prompt tokens too)",
        )
    if family in OUR_STRATEGY:
        return (
            cfg,
            "exactly A's YAML, with mixtrain's processing strategy registered (Axolotl's own crashes or masks nothing)",
        )
    return cfg, "exactly A's YAML"


def bench_family(family: str, args, tmp: Path, env: dict) -> dict:
    """Set up one family's home, run A and B interleaved, print its tables; the medians for the summary."""
    home = Path(env["MIXTRAIN_HOME"])
    t_setup = time.perf_counter()
    model_dir = tmp / f"tiny-{family}"
    _check([sys.executable, "-m", "mixtrain.testing.tiny_vlm", "--family", family, "--out", str(model_dir)], env, tmp)
    from mixtrain.testing.colour_task import make_task

    task = make_task(tmp / "task", n_train=16, n_test=4)
    _check([MIXTRAIN, "dataset", "create", "colours", "--file", str(task["train_csv"])], env, tmp)
    _check([MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune"], env, EXAMPLES)
    print(f"[{family}] setup took {time.perf_counter() - t_setup:.1f} s", flush=True)

    a_cmd = [
        MIXTRAIN,
        "workflow",
        "run",
        "vlm-finetune",
        "--dataset_name",
        "colours",
        "--output_model_name",
        "bench-ft",
        "--base_model",
        str(model_dir),
        "--model_type",
        family,
        "--max_steps",
        str(args.steps),
        "--batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--num_epochs",
        "1",
        "--max_seq_length",
        "512",
    ]
    a_times, b_times, a_marks, b_marks = [], [], [], []
    how = ""
    base_cfg: dict | None = None
    for i in range(args.runs):
        took, seen = timed_stream(a_cmd, env, tmp, A_MARKS, tmp / f"a{i + 1}.log")
        a_times.append(took)
        a_marks.append(seen)
        if base_cfg is None:
            yml = home / "runs" / "vlm-finetune" / "1" / "axolotl.yml"
            base_cfg = yaml.safe_load(yml.read_text())
            shutil.copy2(yml, tmp / "axolotl.from-run-1.yml")

        cfg, how = raw_config(base_cfg, family)
        cfg["output_dir"] = str(tmp / "raw" / f"b{i + 1}" / "out")
        cfg["dataset_prepared_path"] = str(tmp / "raw" / f"b{i + 1}" / "prepared")
        cfg_path = tmp / "raw" / f"b{i + 1}" / "axolotl.yml"
        cfg_path.parent.mkdir(parents=True)
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        took, seen = timed_stream(
            [sys.executable, "-c", RAW_TRAIN_OUR_STRATEGY if family in OUR_STRATEGY else RAW_TRAIN, str(cfg_path)],
            env,
            cfg_path.parent,
            B_MARKS,
            tmp / f"b{i + 1}.log",
        )
        b_times.append(took)
        b_marks.append(seen)
        print(
            f"  [{family}] run {i + 1}: A workflow run {a_times[-1]:6.2f} s   B axolotl.cli.train {b_times[-1]:6.2f} s "
            f"(main returned at {seen.get(RETURNED, float('nan')):6.2f} s)",
            flush=True,
        )

    # ------------------------------------------------------------------ results
    b_nt = [s.get(RETURNED, t) for s, t in zip(b_marks, b_times, strict=True)]  # B without its interpreter teardown
    teardown = [t - s[RETURNED] for s, t in zip(b_marks, b_times, strict=True) if RETURNED in s]
    print(
        f"\n{family} tiny, 16 rows, max_steps {args.steps}, batch 2; {args.runs} runs per side, interleaved A,B,...; "
        f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', '(unset)')}"
    )
    print(f"B = raw Axolotl on {how}")
    print("\n| side                                                        |  min s | median s |  max s |")
    print("|-------------------------------------------------------------|--------|----------|--------|")
    for name, vals in (
        ("A  mixtrain workflow run (whole command; trainer skips teardown)", a_times),
        ("B  axolotl.cli.train until its main returns (no teardown)", b_nt),
        ("B  axolotl.cli.train whole process (pays teardown)", b_times),
        ("   B's interpreter teardown alone", teardown),
    ):
        lo, med, hi = summary(vals)
        print(f"| {name:<59} | {lo:6.2f} | {med:8.2f} | {hi:6.2f} |")
    ma, mb, mbw = statistics.median(a_times), statistics.median(b_nt), statistics.median(b_times)
    ratio = ma / mb
    print(
        f"\nratio A/B, both without interpreter teardown (medians) = {ratio:.3f}  (target <= 1.05: "
        f"{'met' if ratio <= 1.05 else 'MISSED'}); fixed overhead A - B = {ma - mb:+.2f} s"
    )
    print(
        f"ratio A/B against B's whole process (B pays ~{statistics.median(teardown):.2f} s teardown, A does not) = {ma / mbw:.3f}"
    )

    def phases(marks_list, marks, totals):
        rows = []
        prev_name = "command start"
        for j, (marker, name) in enumerate([*marks, (None, "command exit")]):
            vals = []
            for seen, total in zip(marks_list, totals, strict=True):
                prev = 0.0 if j == 0 else seen.get(marks[j - 1][0])
                cur = total if marker is None else seen.get(marker)
                if prev is not None and cur is not None:
                    vals.append(cur - prev)
            rows.append((f"{prev_name} → {name}", statistics.median(vals) if vals else float("nan")))
            prev_name = name.split(" (")[0]
        return rows

    print("\nwhere A's time goes (median seconds between marker lines of `workflow run` output):")
    print("| phase                                                                                          |     s |")
    print("|------------------------------------------------------------------------------------------------|-------|")
    for name, v in phases(a_marks, A_MARKS, a_times):
        print(f"| {name:<94} | {v:5.2f} |")
    print("\nand B's (median seconds between marker lines of raw Axolotl's output):")
    print("| phase                                                                                          |     s |")
    print("|------------------------------------------------------------------------------------------------|-------|")
    for name, v in phases(b_marks, B_MARKS, b_times):
        print(f"| {name:<94} | {v:5.2f} |")

    def span(marks_list, start, end):
        vals = [s[end] - s[start] for s in marks_list if start in s and end in s]
        return statistics.median(vals) if vals else float("nan")

    a_train = span(a_marks, "● load model and data", "● train:")
    b_train = span(b_marks, "Starting trainer", "Model successfully saved")
    a_before = statistics.median(s["Single GPU mode"] for s in a_marks if "Single GPU mode" in s)
    b_load = statistics.median(s["Starting trainer"] for s in b_marks if "Starting trainer" in s)
    a_load = span(a_marks, "Single GPU mode", "● load model and data")
    a_after = statistics.median(t - s["● train:"] for s, t in zip(a_marks, a_times, strict=True) if "● train:" in s)
    b_after = statistics.median(
        t - s["Model successfully saved"] for s, t in zip(b_marks, b_nt, strict=True) if "Model successfully saved" in s
    )
    print(f"\n| {'side by side (medians, s; B without teardown)':<56} |     A |     B | A - B |")
    print("|----------------------------------------------------------|-------|-------|-------|")
    for label, a, b in (
        ("before the trainer process starts (CLI, prepare, config)", a_before, 0.0),
        ("trainer start-up until 'Starting trainer'", a_load, b_load),
        ("training (A: tracker begin→end; B: start→saved)", a_train, b_train),
        ("then → exit / main returned (A includes saving)", a_after, b_after),
    ):
        print(f"| {label:<56} | {a:5.2f} | {b:5.2f} | {a - b:+5.2f} |")
    # Recording cost: the tracker times its own work (DB rows + progress.json) per logged step.
    rec = [
        json.loads((home / "runs" / "vlm-finetune" / str(n) / "progress.json").read_text())
        for n in range(1, args.runs + 1)
    ]
    spent, trained = statistics.median(r["tracking_s"] for r in rec), statistics.median(r["elapsed_s"] for r in rec)
    print(
        f"\nmetrics recording ({args.steps} logged steps): {spent * 1000:.1f} ms of {trained:.2f} s training = {100 * spent / trained:.2f}% (target <= 2%)"
    )
    return {"family": family, "a": ma, "b": mb, "b_whole": mbw, "teardown": statistics.median(teardown), "how": how}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--family",
        default="both",
        help="which tiny model(s) to fine-tune: one of qwen2_vl, llava, "
        + ", ".join(NEWER)
        + ", or a comma-separated list of them, or both (qwen2_vl + llava), newer (the newer families), all",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    ap.add_argument("--steps", type=int, default=8, help="--max_steps per training (default 8)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="set OMP_NUM_THREADS/MKL_NUM_THREADS for both sides (default: unset, torch's own choice)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (printed)")
    args = ap.parse_args()

    t_script = time.perf_counter()
    sys.path.insert(0, str(REPO / "src"))
    families = {"both": ("qwen2_vl", "llava"), "newer": NEWER, "all": ("qwen2_vl", "llava", *NEWER)}.get(
        args.family, tuple(args.family.split(","))
    )
    unknown = [f for f in families if f not in ("qwen2_vl", "llava", *NEWER)]
    if unknown:
        ap.error(f"unknown family {', '.join(unknown)} (see --help)")
    results, tmps = [], []
    try:
        for family in families:
            tmp, env = workspace(f"mixtrain-bench-ft-{family}-", args.threads)
            tmps.append(tmp)
            print(f"\n=== {family}: setup in {tmp} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
            results.append(bench_family(family, args, tmp, env))
        print("\n=== summary (medians, s)")
        # The fixed overhead is what A adds in seconds (prepare, config, validation, registration, tracking):
        # it does not grow with the steps, so on a real run the ratio tends to 1 — print both.
        print("| family   |     A | B no teardown | A/B   | overhead A-B s | B whole | A/B whole | B teardown |")
        print("|----------|-------|---------------|-------|----------------|---------|-----------|------------|")
        for r in results:
            print(
                f"| {r['family']:<8} | {r['a']:5.2f} | {r['b']:13.2f} | {r['a'] / r['b']:5.3f} | {r['a'] - r['b']:+14.2f} | "
                f"{r['b_whole']:7.2f} | {r['a'] / r['b_whole']:9.3f} | {r['teardown']:10.2f} |"
            )
        for r in results:
            print(f"  {r['family']}: B = raw Axolotl on {r['how']}")
        print(
            f"\nload average now {os.getloadavg()[0]:.2f} (2 cores are shared with other work: train times are noisy)"
        )
        print(f"total script time {time.perf_counter() - t_script:.1f} s")
    finally:
        for tmp in tmps:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
