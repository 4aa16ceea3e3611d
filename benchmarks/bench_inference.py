"""Inference cost of ``mixtrain model run`` next to plain transformers + peft: cold start, one batch command vs separate calls.

    .venv/bin/python benchmarks/bench_inference.py [--runs 2] [--rows 8] [--imports 5] [--base-only] [--threads N] [--keep]

Setup (untimed): a tiny random LLaVA (``python -m mixtrain.testing.tiny_vlm``), colour-task images, and
a model to query in a fresh temporary ``MIXTRAIN_HOME``: fine-tuned once through the workflow (4 steps,
so ``model run`` loads base + LoRA adapter like a real fine-tune), or with ``--base-only`` the base
model registered with ``mixtrain model register``. Generation: ``{"max_new_tokens": 8}`` (greedy).

(a) cold start, fresh processes interleaved ``--imports`` times (after one untimed warm-up of each):
    ``python -c "import torch, transformers"`` (the reference the issue names) vs one whole
    ``mixtrain model run NAME --image IMG --prompt ...`` (after: lean; before: ``MIXTRAIN_LEAN_IMPORTS=0``),
    the ratio to the reference being the figure the issue targets (<= 1.5x); and, for the breakdown,
    what loading a model imports — torch, ``AutoModelForImageTextToText``, ``AutoProcessor``,
    ``peft.PeftModel`` — the plain way (every installed integration loads) and mixtrain's lean way
    (``models/_fastimport.py``: optional integrations hidden, collector paused, cached distribution map).
    Wall and CPU seconds (CPU is steadier on a shared machine).
Then ``--runs`` rounds, interleaved, each command a fresh process, all on the same ``--rows`` rows:
    batch     ``mixtrain model run NAME --inputs-file rows.jsonl --output out.jsonl`` (one load)
    raw       ``python -c RAW``: plain transformers + peft in one process, the same rows one ``generate`` each
              (what the batch command does), the processor's chat template, same base + adapter
    separate  ``mixtrain model run NAME --image IMG --prompt ... --json`` once per row (``--rows`` commands,
              measured, not extrapolated)
    before    one ``model run`` single call with ``MIXTRAIN_LEAN_IMPORTS=0`` (the import path before the fix)
(b) single calls: wall split into load (``load_s``: imports + processor + base + adapter), generate
    (``latency_s``) and the rest (CLI start-up, registry lookup, image check); before vs after.
(c) the rows three ways: batch command vs raw transformers+peft process vs separate commands; rows/s,
    ratios, and whether the raw process produced the same greedy answers.
(d) in one Python process, ``mixtrain.get_model(name).run(...)`` twice: the second call reuses the model.
Prints numbers only; asserts nothing. ``--threads N`` sets OMP_NUM_THREADS for every command (on a CPU
shared with other work, torch's default threads oversubscribe it and tiny-model generation slows down
by up to ~25x). Run it under the heavy lock on the shared machine: ``flock /tmp/mixtrain-heavy.lock ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import EXAMPLES, MIXTRAIN, REPO, workspace

PROMPT = "What colour is the shape?"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
MAX_NEW = 8
GEN = json.dumps({"max_new_tokens": MAX_NEW})

IMPORT_REFERENCE = "import torch, transformers"
IMPORT_PLAIN = (
    "import torch\nfrom transformers import AutoModelForImageTextToText, AutoProcessor\nfrom peft import PeftModel\n"
)
# argv: base model folder, processor folder, cache folder (what LoadedModel passes)
IMPORT_LEAN = (
    "import sys\nfrom mixtrain.models import _fastimport\n_fastimport.enable()\n"
    "with _fastimport.lean_imports(*sys.argv[1:4]):\n    _fastimport.import_inference_stack(with_peft=True)\n"
)

# Plain transformers + peft, as a user without mixtrain would write it: one process, the same rows, one
# ``generate`` per row (as ``model run --inputs-file`` does), the processor's chat template, greedy.
RAW = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
t1 = time.perf_counter()
base, adapter, rows_file, max_new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
processor = AutoProcessor.from_pretrained(adapter or base, use_fast=False)
model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
if adapter:
    from peft import PeftModel
    model = PeftModel.from_pretrained(model, adapter)
model.eval()
t2 = time.perf_counter()
tok = processor.tokenizer
texts = []
for line in open(rows_file):
    row = json.loads(line)
    image = Image.open(row["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(images=[image], text=[prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    texts.append(tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip())
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2, "texts": texts}))
"""

IN_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
import mixtrain
t1 = time.perf_counter()
name, image, prompt = sys.argv[1:4]
inp = {"image": image, "prompt": prompt}
r1 = mixtrain.get_model(name).run(inp, max_new_tokens=8)
t2 = time.perf_counter()
r2 = mixtrain.get_model(name).run(inp, max_new_tokens=8)
t3 = time.perf_counter()
m = mixtrain.get_model(name)
import torch
print(json.dumps({
    "import_s": t1 - t0, "threads": torch.get_num_threads(), "first_s": t2 - t1, "second_s": t3 - t2, "load_s": m.load_seconds,
    "latency1_s": r1["latency_s"], "latency2_s": r2["latency_s"], "same_object": m is mixtrain.get_model(name),
    "same_text": r1["generated_text"] == r2["generated_text"],
}))
"""


def run(cmd, env, cwd) -> tuple[float, float, str]:
    """A fresh process: wall seconds, CPU seconds (user + system of the process tree), stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd))[:300]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def mmm(values: list[float]) -> str:
    return f"{min(values):7.2f} | {statistics.median(values):8.2f} | {max(values):7.2f}"


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs", type=int, default=2, help="rounds of (batch, raw, separate calls, one 'before' call); default 2"
    )
    ap.add_argument(
        "--rows",
        type=int,
        default=8,
        help="rows, the same for the batch command, the raw process and the separate calls (default 8)",
    )
    ap.add_argument(
        "--imports", type=int, default=5, help="fresh processes per import set for the cold-start table (default 5)"
    )
    ap.add_argument(
        "--base-only", action="store_true", help="query the registered base model instead of a 4-step fine-tune"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="set OMP_NUM_THREADS/MKL_NUM_THREADS for every command (default: unset, torch's own choice)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = ap.parse_args()

    t_script = time.perf_counter()
    tmp, env = workspace("mixtrain-bench-inf-", args.threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    try:
        print(f"setup in {tmp} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        model_dir = tmp / "tiny-llava"
        run([sys.executable, "-m", "mixtrain.testing.tiny_vlm", "--family", "llava", "--out", str(model_dir)], env, tmp)
        sys.path.insert(0, str(REPO / "src"))
        from mixtrain.testing.colour_task import make_task

        task = make_task(tmp / "task", n_train=16, n_test=args.rows)
        images = [json.loads(line)["image"] for line in task["test_jsonl"].read_text().splitlines() if line.strip()][
            : args.rows
        ]
        rows_file = tmp / "rows.jsonl"
        rows_file.write_text("".join(json.dumps({"image": img, "prompt": PROMPT}) + "\n" for img in images))
        if args.base_only:
            name = "tiny-llava-base"
            run(
                [MIXTRAIN, "model", "register", name, "--base_model", str(model_dir), "--model_type", "llava"], env, tmp
            )
            what = "base model (no adapter)"
        else:
            name = "tiny-llava-ft"
            run([MIXTRAIN, "dataset", "create", "colours", "--file", str(task["train_csv"])], env, tmp)
            run([MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "vlm-finetune"], env, EXAMPLES)
            took, _, _ = run(
                [
                    MIXTRAIN,
                    "workflow",
                    "run",
                    "vlm-finetune",
                    "--dataset_name",
                    "colours",
                    "--output_model_name",
                    name,
                    "--base_model",
                    str(model_dir),
                    "--model_type",
                    "llava",
                    "--max_steps",
                    "4",
                    "--batch_size",
                    "2",
                    "--num_epochs",
                    "1",
                    "--max_seq_length",
                    "256",
                ],
                env,
                tmp,
            )
            what = f"4-step LoRA fine-tune (base + adapter; fine-tune took {took:.1f} s)"
        info = json.loads(run([MIXTRAIN, "model", "get", name, "--json"], env, tmp)[2])
        base, adapter = info["base_model"], info.get("adapter_path") or ""
        print(f"setup took {time.perf_counter() - t_script:.1f} s; querying {name}: {what}\n", flush=True)

        # (a) cold start: the whole single call and the import sets, interleaved, each a fresh process
        single = [MIXTRAIN, "model", "run", name, "--image", images[0], "--prompt", PROMPT, "--config", GEN]
        proc_dir = adapter if adapter and any((Path(adapter) / f).is_file() for f in PROCESSOR_FILES) else base
        lean_args = [base, proc_dir, str(tmp / "home" / "cache")]
        cold = {
            "reference": ([sys.executable, "-c", IMPORT_REFERENCE], env),
            "run": (single, env),
            "run_before": (single, {**env, "MIXTRAIN_LEAN_IMPORTS": "0"}),
            "plain": ([sys.executable, "-c", IMPORT_PLAIN], env),
            "lean": ([sys.executable, "-c", IMPORT_LEAN, *lean_args], env),
        }
        for cmd, cmd_env in cold.values():  # warm-up, untimed: file cache, and the lean path's distribution map
            run(cmd, cmd_env, tmp)
        imports: dict[str, list[tuple[float, float]]] = {key: [] for key in cold}
        for _ in range(args.imports):
            for key, (cmd, cmd_env) in cold.items():
                wall, cpu, _ = run(cmd, cmd_env, tmp)
                imports[key].append((wall, cpu))
        print("  cold start measured", flush=True)

        batch_wall, batch_gen, raw_res, sep_wall, singles, before = [], [], [], [], [], []
        batch_texts: list[str] = []
        for r in range(args.runs):
            out = tmp / f"out{r + 1}.jsonl"
            wall, _, _ = run(
                [
                    MIXTRAIN,
                    "model",
                    "run",
                    name,
                    "--inputs-file",
                    str(rows_file),
                    "--output",
                    str(out),
                    "--config",
                    GEN,
                ],
                env,
                tmp,
            )
            results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
            batch_wall.append(wall)
            batch_gen.append(sum(x["latency_s"] for x in results))
            batch_texts = [x["generated_text"] for x in results]

            wall, _, stdout = run([sys.executable, "-c", RAW, base, adapter, str(rows_file), str(MAX_NEW)], env, tmp)
            raw_res.append({"wall": wall, **json.loads(stdout.strip().splitlines()[-1])})

            total = 0.0
            for img in images:
                wall, _, stdout = run(
                    [MIXTRAIN, "model", "run", name, "--image", img, "--prompt", PROMPT, "--json", "--config", GEN],
                    env,
                    tmp,
                )
                res = json.loads(stdout)
                singles.append({"wall": wall, "load": res["load_s"], "gen": res["latency_s"]})
                total += wall
            sep_wall.append(total)

            wall, _, stdout = run(
                [
                    MIXTRAIN,
                    "model",
                    "run",
                    name,
                    "--image",
                    images[r % len(images)],
                    "--prompt",
                    PROMPT,
                    "--json",
                    "--config",
                    GEN,
                ],
                {**env, "MIXTRAIN_LEAN_IMPORTS": "0"},
                tmp,
            )
            res = json.loads(stdout)
            before.append({"wall": wall, "load": res["load_s"], "gen": res["latency_s"]})
            print(
                f"  round {r + 1}: batch {batch_wall[-1]:6.2f} s   raw {raw_res[-1]['wall']:6.2f} s   "
                f"{len(images)} separate {total:6.2f} s   before-fix single {before[-1]['wall']:5.2f} s",
                flush=True,
            )

        _, _, stdout = run([sys.executable, "-c", IN_PROCESS, name, images[0], PROMPT], env, tmp)
        inproc = json.loads(stdout.strip().splitlines()[-1])

        # ------------------------------------------------------------------ results
        n = len(images)
        print(
            f"\ntiny LLaVA, {what}; CPU, torch threads {inproc['threads']}{' (--threads)' if args.threads else ''}; "
            f"max_new_tokens {MAX_NEW}; {args.runs} rounds interleaved; {n} rows"
        )

        print(f"\n(a) cold start: fresh processes, {args.imports} each, interleaved (medians)")
        print(
            "| command                                                         |  wall s |   CPU s | wall / reference |"
        )
        print(
            "|-----------------------------------------------------------------|---------|---------|------------------|"
        )
        ref = imports["reference"]
        for key, label in (
            ("reference", 'python -c "import torch, transformers" (reference)'),
            ("run", "mixtrain model run NAME --image IMG --prompt ... (after)"),
            ("run_before", "  the same with MIXTRAIN_LEAN_IMPORTS=0 (before)"),
            ("plain", "model-load imports only, plain"),
            ("lean", "model-load imports only, mixtrain lean"),
        ):
            w, c = med([w for w, _ in imports[key]]), med([c for _, c in imports[key]])
            pairs = med([a / r for (a, _), (r, _) in zip(imports[key], ref, strict=True)])
            print(f"| {label:<63} | {w:7.2f} | {c:7.2f} | {pairs:15.2f}x |")
        ratio = med([a / r for (a, _), (r, _) in zip(imports["run"], ref, strict=True)])
        ratio_before = med([a / r for (a, _), (r, _) in zip(imports["run_before"], ref, strict=True)])
        print(
            f"cold start: model run / reference = {ratio:.2f}x (median of pairs; target <= 1.5x: "
            f"{'met' if ratio <= 1.5 else 'MISSED'}); before (lean off) {ratio_before:.2f}x; "
            f"lean imports / plain imports = {med([w for w, _ in imports['lean']]) / med([w for w, _ in imports['plain']]):.2f}x"
        )

        print(
            f"\n(b) one `mixtrain model run NAME --image IMG --prompt ... --json` per process: after (K = {len(singles)}) vs before the fix (K = {len(before)})"
        )
        print(
            "| part of a single call                                | after: min | median |    max | before: median |"
        )
        print(
            "|------------------------------------------------------|------------|--------|--------|----------------|"
        )
        for label, key in (
            ("whole command (wall)", "wall"),
            ("load: imports + processor + base + adapter", "load"),
            ("generate: preprocess + generate + decode", "gen"),
        ):
            vals = [s[key] for s in singles]
            print(
                f"| {label:<52} | {min(vals):10.2f} | {med(vals):6.2f} | {max(vals):6.2f} | {med([b[key] for b in before]):14.2f} |"
            )
        rest = [s["wall"] - s["load"] - s["gen"] for s in singles]
        rest_b = [b["wall"] - b["load"] - b["gen"] for b in before]
        print(
            f"| {'rest: CLI start-up, registry lookup, image check':<52} | {min(rest):10.2f} | {med(rest):6.2f} | {max(rest):6.2f} | {med(rest_b):14.2f} |"
        )
        mw = med([s["wall"] for s in singles])
        print(
            f"cold start before/after (median single-call wall) = {med([b['wall'] for b in before]):.2f} s / {mw:.2f} s "
            f"= {med([b['wall'] for b in before]) / mw:.2f}x; after: load {med([s['load'] for s in singles]) / mw:.0%} of the wall time"
        )

        print(f"\n(c) the same {n} rows three ways (each a fresh process; medians over {args.runs} rounds)")
        print("| side                                                        |   min s | median s |   max s | rows/s |")
        print("|-------------------------------------------------------------|---------|----------|---------|--------|")
        raw_wall = [x["wall"] for x in raw_res]
        for label, vals in (
            (f"batch: 1 `model run --inputs-file` command, {n} rows", batch_wall),
            (f"raw: 1 transformers+peft process, {n} rows", raw_wall),
            (f"separate: {n} `model run` commands (measured)", sep_wall),
        ):
            print(f"| {label:<59} | {mmm(vals)} | {n / med(vals):6.2f} |")
        print(
            "| raw process parts (median): import / load / generate        | "
            f"{med([x['import_s'] for x in raw_res]):7.2f} | {med([x['load_s'] for x in raw_res]):8.2f} | {med([x['generate_s'] for x in raw_res]):7.2f} |        |"
        )
        print(
            f"batch command / raw process = {med(batch_wall) / med(raw_wall):.2f}x wall (raw pays the plain imports: "
            f"{med([x['import_s'] for x in raw_res]):.2f} s); batch generate (sum of latency_s) {med(batch_gen):.2f} s vs raw "
            f"{med([x['generate_s'] for x in raw_res]):.2f} s = {med(batch_gen) / med([x['generate_s'] for x in raw_res]):.2f}x"
        )
        same = sum(a == b for a, b in zip(batch_texts, raw_res[-1]["texts"], strict=True))
        print(
            f"separate / batch = {med(sep_wall) / med(batch_wall):.1f}x; raw answers equal to the batch command's: {same}/{n}"
        )

        print(
            "\n(d) in one Python process: `mixtrain.get_model(name).run(inp)` twice (SDK: no lean imports unless MIXTRAIN_LEAN_IMPORTS=1)"
        )
        print("| step                                            |       s |")
        print("|-------------------------------------------------|---------|")
        print(f"| import mixtrain                                 | {inproc['import_s']:7.3f} |")
        print(f"| 1st get_model(name).run(...) (imports + load)   | {inproc['first_s']:7.3f} |")
        print(f"|   of which load incl. imports (load_seconds)    | {inproc['load_s']:7.3f} |")
        print(f"|   of which generate (latency_s)                 | {inproc['latency1_s']:7.3f} |")
        print(f"| 2nd get_model(name).run(...) (cached model)     | {inproc['second_s']:7.3f} |")
        print(f"|   of which generate (latency_s)                 | {inproc['latency2_s']:7.3f} |")
        print(
            f"second call reloads: {'no' if inproc['same_object'] else 'YES'}; same greedy output: {inproc['same_text']}; "
            f"ratio 1st/2nd = {inproc['first_s'] / inproc['second_s']:.0f}x"
        )
        print(f"\nload average now {os.getloadavg()[0]:.2f} (2 cores are shared with other work)")
        print(f"total script time {time.perf_counter() - t_script:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
