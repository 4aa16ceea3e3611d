"""Inference cost of ``mixtrain model run``: load vs generate, one row per command vs one batch command.

    .venv/bin/python benchmarks/bench_inference.py [--runs 3] [--per-run 3] [--rows 32] [--base-only] [--threads N] [--keep]

Setup (untimed): a tiny random LLaVA (``python -m mixtrain.testing.tiny_vlm``), colour-task images, and
a model to query in a fresh temporary ``MIXTRAIN_HOME``: fine-tuned once through the workflow (4 steps,
so ``model run`` loads base + LoRA adapter like a real fine-tune), or with ``--base-only`` the base
model registered with ``mixtrain model register``. Then ``--runs`` rounds, interleaved, each a fresh
process:

  batch   ``mixtrain model run NAME --inputs-file rows.jsonl --output out.jsonl`` (``--rows`` rows, one load)
  single  ``mixtrain model run NAME --image IMG --prompt ... --json`` × ``--per-run`` (rows 1, 2, ...)

(a) single calls: whole-command wall time split into load (``load_s``: it includes importing torch,
    transformers and peft, which happens on first use), generate (``latency_s``) and the rest (CLI
    start-up, registry lookup, image check). (b) throughput: rows/s of the batch
    command vs separate calls; separate calls for all rows are extrapolated from the K timed single
    calls (K = runs × per-run), as printed. (c) in one Python process, ``mixtrain.get_model(name).run(...)``
    twice: the second call reuses the loaded model. Generation: ``{"max_new_tokens": 8}`` (greedy).
Prints numbers only; asserts nothing. ``--threads N`` sets OMP_NUM_THREADS for every command (on a CPU
shared with other work, torch's default threads oversubscribe it and tiny-model generation slows down
by up to ~25x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

from common import EXAMPLES, MIXTRAIN, REPO, timed, workspace
PROMPT = "What colour is the shape?"
GEN = '{"max_new_tokens": 8}'

IN_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
import mixtrain
t1 = time.perf_counter()
import torch, transformers, peft  # what LoadedModel imports on first use, timed apart from the load itself
from transformers import AutoModelForImageTextToText, AutoProcessor
t_heavy = time.perf_counter() - t1
t1 = time.perf_counter()
name, image, prompt = sys.argv[1:4]
inp = {"image": image, "prompt": prompt}
r1 = mixtrain.get_model(name).run(inp, max_new_tokens=8)
t2 = time.perf_counter()
r2 = mixtrain.get_model(name).run(inp, max_new_tokens=8)
t3 = time.perf_counter()
m = mixtrain.get_model(name)
print(json.dumps({
    "import_s": t1 - t0 - t_heavy, "heavy_import_s": t_heavy, "threads": torch.get_num_threads(), "first_s": t2 - t1, "second_s": t3 - t2, "load_s": m.load_seconds,
    "latency1_s": r1["latency_s"], "latency2_s": r2["latency_s"], "same_object": m is mixtrain.get_model(name),
    "same_text": r1["generated_text"] == r2["generated_text"],
}))
"""


def run(cmd, env, cwd) -> tuple[float, str]:
    took, proc = timed(cmd, env, cwd)
    return took, proc.stdout


def mmm(values: list[float]) -> str:
    return f"{min(values):7.3f} | {statistics.median(values):8.3f} | {max(values):7.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds of (one batch command, --per-run single commands); default 3")
    ap.add_argument("--per-run", type=int, default=3, help="single commands per round (default 3)")
    ap.add_argument("--rows", type=int, default=32, help="rows in the batch file (default 32)")
    ap.add_argument("--base-only", action="store_true", help="query the registered base model instead of a 4-step fine-tune")
    ap.add_argument("--threads", type=int, default=0, help="set OMP_NUM_THREADS/MKL_NUM_THREADS for every command (default: unset, torch's own choice)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = ap.parse_args()

    t_script = time.perf_counter()
    tmp, env = workspace("mixtrain-bench-inf-", args.threads)
    try:
        print(f"setup in {tmp} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        model_dir = tmp / "tiny-llava"
        run([sys.executable, "-m", "mixtrain.testing.tiny_vlm", "--family", "llava", "--out", str(model_dir)], env, tmp)
        sys.path.insert(0, str(REPO / "src"))
        from mixtrain.testing.colour_task import make_task

        task = make_task(tmp / "task", n_train=16, n_test=args.rows)
        images = [json.loads(line)["image"] for line in task["test_jsonl"].read_text().splitlines() if line.strip()]
        rows_file = tmp / "rows.jsonl"
        rows_file.write_text("".join(json.dumps({"image": img, "prompt": PROMPT}) + "\n" for img in images))
        if args.base_only:
            name = "tiny-llava-base"
            run([MIXTRAIN, "model", "register", name, "--base_model", str(model_dir), "--model_type", "llava"], env, tmp)
            what = "base model (no adapter)"
        else:
            name = "tiny-llava-ft"
            run([MIXTRAIN, "dataset", "create", "colours", "--file", str(task["train_csv"])], env, tmp)
            run([MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune"], env, EXAMPLES)
            took, _ = run([MIXTRAIN, "workflow", "run", "vlm-finetune", "--dataset_name", "colours", "--output_model_name", name,
                           "--base_model", str(model_dir), "--model_type", "llava", "--max_steps", "4", "--batch_size", "2",
                           "--num_epochs", "1", "--max_seq_length", "256"], env, tmp)
            what = f"4-step LoRA fine-tune (base + adapter; fine-tune took {took:.1f} s)"
        print(f"setup took {time.perf_counter() - t_script:.1f} s; querying {name}: {what}\n", flush=True)

        batch_wall, batch_gen, singles = [], [], []
        k = 0
        for r in range(args.runs):
            out = tmp / f"out{r + 1}.jsonl"
            took, _ = run([MIXTRAIN, "model", "run", name, "--inputs-file", str(rows_file), "--output", str(out), "--config", GEN], env, tmp)
            results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
            batch_wall.append(took)
            batch_gen.append(sum(x["latency_s"] for x in results))
            line = f"  round {r + 1}: batch {len(results)} rows {took:6.2f} s   singles"
            for _ in range(args.per_run):
                img = images[k % len(images)]
                k += 1
                took, stdout = run([MIXTRAIN, "model", "run", name, "--image", img, "--prompt", PROMPT, "--json", "--config", GEN], env, tmp)
                res = json.loads(stdout)
                singles.append({"wall": took, "load": res["load_s"], "gen": res["latency_s"]})
                line += f" {took:5.2f}"
            print(line + " s", flush=True)

        took, stdout = run([sys.executable, "-c", IN_PROCESS, name, images[0], PROMPT], env, tmp)
        inproc = json.loads(stdout.strip().splitlines()[-1])

        # ------------------------------------------------------------------ results
        n_rows = args.rows
        wall = [s["wall"] for s in singles]
        load = [s["load"] for s in singles]
        gen = [s["gen"] for s in singles]
        rest = [s["wall"] - s["load"] - s["gen"] for s in singles]
        print(f"\ntiny LLaVA, {what}; CPU, torch threads {inproc['threads']}{' (--threads)' if args.threads else ''}; max_new_tokens 8; {args.runs} rounds interleaved (batch, {args.per_run} singles)")
        print(f"\n(a) one `mixtrain model run NAME --image IMG --prompt ... --json` per process, K = {len(singles)} calls")
        print("| part of a single call                                   |   min s | median s |   max s |")
        print("|---------------------------------------------------------|---------|----------|---------|")
        print(f"| whole command (wall)                                    | {mmm(wall)} |")
        print(f"| load: imports + processor + base + adapter (load_s)     | {mmm(load)} |")
        print(f"| generate: preprocess + generate + decode (latency_s)    | {mmm(gen)} |")
        print(f"| rest: CLI start-up, registry lookup, image check        | {mmm(rest)} |")
        mw = statistics.median(wall)
        print(f"median shares: load {statistics.median(load) / mw:.0%}, generate {statistics.median(gen) / mw:.0%}, "
              f"rest {statistics.median(rest) / mw:.0%} of the wall time")

        print(f"\n(b) {n_rows} rows: one `--inputs-file` command vs {n_rows} separate commands")
        print("| side                                                     |   min s | median s |   max s | rows/s (median) |")
        print("|----------------------------------------------------------|---------|----------|---------|-----------------|")
        extrap = [w * n_rows for w in wall]
        mb, me = statistics.median(batch_wall), statistics.median(extrap)
        print(f"| batch: 1 command, {n_rows} rows (wall, measured)               | {mmm(batch_wall)} | {n_rows / mb:15.2f} |")
        print(f"| separate: {n_rows} commands (= {n_rows} × single wall, extrapolated) | {mmm(extrap)} | {n_rows / me:15.2f} |")
        print(f"batch generate time (sum of latency_s): median {statistics.median(batch_gen):.2f} s "
              f"= {statistics.median(batch_gen) / n_rows * 1000:.0f} ms/row; batch start-up + load: "
              f"{mb - statistics.median(batch_gen):.2f} s")
        print(f"throughput ratio batch/separate = {me / mb:.1f}x  (separate calls extrapolated from K = {len(singles)} "
              f"timed single calls, not run {n_rows} times)")

        print("\n(c) in one Python process: `mixtrain.get_model(name).run(inp)` twice")
        print("| step                                            |       s |")
        print("|-------------------------------------------------|---------|")
        print(f"| import mixtrain                                 | {inproc['import_s']:7.3f} |")
        print(f"| import torch, transformers, peft (up front)     | {inproc['heavy_import_s']:7.3f} |")
        print(f"| 1st get_model(name).run(...) (loads the model)  | {inproc['first_s']:7.3f} |")
        print(f"|   of which load, no imports (load_seconds)      | {inproc['load_s']:7.3f} |")
        print(f"|   of which generate (latency_s)                 | {inproc['latency1_s']:7.3f} |")
        print(f"| 2nd get_model(name).run(...) (cached model)     | {inproc['second_s']:7.3f} |")
        print(f"|   of which generate (latency_s)                 | {inproc['latency2_s']:7.3f} |")
        print(f"second call reloads: {'no' if inproc['same_object'] else 'YES'} (get_model returns the same object: "
              f"{inproc['same_object']}); same greedy output: {inproc['same_text']}; "
              f"ratio 1st/2nd = {inproc['first_s'] / inproc['second_s']:.0f}x")
        print(f"\nload average now {os.getloadavg()[0]:.2f} (2 cores are shared with other work)")
        print(f"total script time {time.perf_counter() - t_script:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
