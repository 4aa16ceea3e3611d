"""Eval throughput: `mixtrain eval create` (one load, batched generation, run engine, results table)
vs a raw transformers + peft loop generating the same rows one by one in one process.

    .venv/bin/python benchmarks/bench_eval.py [--rows 64] [--batch-size 16] [--max-new-tokens 16] [--threads 1] [--keep]

Setup (untimed): a tiny random LLaVA (``python -m mixtrain.testing.tiny_vlm``), a random LoRA adapter
on its language model (peft, ``init_lora_weights=False``, so answers are long and differ per row)
registered as a model, and ``--rows`` colour-task rows as a dataset, in a fresh temporary home.

  eval   ``mixtrain eval create NAME --dataset rows --models tiny-lora --metric none --batch_size B``:
         the whole command's wall time (CLI, run engine, model load, generation, Iceberg results), and
         the generation time the eval records (``generation_s``).
  raw    ``python -c RAW``: load base + ``PeftModel`` + processor, then for each row apply the chat
         template, preprocess, ``model.generate`` (greedy), decode: whole process wall time, and the
         generation loop alone.

Both sides are greedy with the same processor settings; the script asserts the outputs are identical
row for row before printing any ratio. Prints numbers; asserts only that equality.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time

from common import MIXTRAIN, REPO, timed, workspace

PROMPT = "What colour is the shape?"

ADAPTER = r"""
import sys
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText
import torch
torch.manual_seed(0)
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1])
lora = LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q|v)_proj", init_lora_weights=False)
get_peft_model(model, lora).save_pretrained(sys.argv[2])
"""

REGISTER = r"""
import sys
from mixtrain.models.registry import ModelRegistry
from mixtrain.settings import load_settings
ModelRegistry(load_settings()).register(sys.argv[1], base_model=sys.argv[2], model_type="llava", adapter_path=sys.argv[3],
                                        train_loss=None, lineage={"benchmark": "random LoRA adapter"})
"""

RAW = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
base, adapter, rows_file, max_new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
processor = AutoProcessor.from_pretrained(base, use_fast=False)  # what mixtrain uses on CPU
model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32), adapter).eval()
tok = processor.tokenizer
rows = [json.loads(line) for line in open(rows_file)]
t1 = time.perf_counter()
texts = []
for row in rows:
    image = Image.open(row["image"]).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(images=[image], text=[prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    texts.append(tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip())
t2 = time.perf_counter()
print(json.dumps({"texts": texts, "setup_s": t1 - t0, "generate_s": t2 - t1, "threads": torch.get_num_threads()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for both sides (default 1: fastest for a tiny model on a shared CPU)",
    )
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    t_script = time.perf_counter()
    tmp, env = workspace("mixtrain-bench-eval-", args.threads)
    try:
        print(f"setup in {tmp} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        base, adapter = tmp / "tiny-llava", tmp / "lora"
        timed([sys.executable, "-m", "mixtrain.testing.tiny_vlm", "--family", "llava", "--out", str(base)], env, tmp)
        timed([sys.executable, "-c", ADAPTER, str(base), str(adapter)], env, tmp)
        timed([sys.executable, "-c", REGISTER, "tiny-lora", str(base), str(adapter)], env, tmp)
        sys.path.insert(0, str(REPO / "src"))
        from mixtrain.testing.colour_task import make_task

        task = make_task(tmp / "task", n_train=6, n_test=args.rows)
        with open(task["test_csv"]) as fh:
            rows = [{"image": r["image_path"], "prompt": PROMPT} for r in csv.DictReader(fh)]
        with open(tmp / "rows.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image_path", "prompt"])
            w.writerows((r["image"], r["prompt"]) for r in rows)
        (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        timed([MIXTRAIN, "dataset", "create", "rows", "--file", str(tmp / "rows.csv")], env, tmp)
        # The built-in eval workflow registers itself on first use; do that outside the timing.
        timed(
            [
                MIXTRAIN,
                "eval",
                "create",
                "warm",
                "--dataset",
                "rows",
                "--models",
                "tiny-lora",
                "--metric",
                "none",
                "--limit",
                "1",
                "--config",
                json.dumps({"max_new_tokens": 1}),
            ],
            env,
            tmp,
        )
        print(f"setup took {time.perf_counter() - t_script:.1f} s\n", flush=True)

        gen = json.dumps({"max_new_tokens": args.max_new_tokens})
        eval_wall, _ = timed(
            [
                MIXTRAIN,
                "eval",
                "create",
                "bench",
                "--dataset",
                "rows",
                "--models",
                "tiny-lora",
                "--metric",
                "none",
                "--batch_size",
                str(args.batch_size),
                "--config",
                gen,
            ],
            env,
            tmp,
        )
        _, proc = timed([MIXTRAIN, "eval", "get", "bench", "--json"], env, tmp)
        rec = json.loads(proc.stdout)
        eval_gen = rec["scores"]["tiny-lora_v1"]["generation_s"]
        _, proc = timed([MIXTRAIN, "eval", "results", "bench", "--json", "--limit", str(args.rows)], env, tmp)
        eval_texts = [r["tiny-lora_v1__output"] for r in sorted(json.loads(proc.stdout), key=lambda r: r["row_id"])]

        raw_wall, proc = timed(
            [sys.executable, "-c", RAW, str(base), str(adapter), str(tmp / "rows.jsonl"), str(args.max_new_tokens)],
            env,
            tmp,
        )
        raw = json.loads(proc.stdout.strip().splitlines()[-1])

        same = sum(a == b for a, b in zip(eval_texts, raw["texts"], strict=False))
        if same != len(rows) or len(eval_texts) != len(rows):
            diffs = [(i, a, b) for i, (a, b) in enumerate(zip(eval_texts, raw["texts"], strict=False)) if a != b][:5]
            raise SystemExit(f"outputs differ on {len(rows) - same} of {len(rows)} rows, e.g. {diffs}")
        distinct = len(set(raw["texts"]))

        n = len(rows)
        print(
            f"tiny LLaVA + random LoRA (r8, q/v of the language model), CPU, {raw['threads']} torch thread(s); "
            f"{n} rows, greedy, max_new_tokens {args.max_new_tokens}, eval batch size {args.batch_size}"
        )
        print(f"outputs identical on {same}/{n} rows ({distinct} distinct answers)\n")
        print("| side                                                  | seconds | rows/s |")
        print("|-------------------------------------------------------|---------|--------|")
        print(f"| eval: whole `mixtrain eval create` command (wall)     | {eval_wall:7.2f} | {n / eval_wall:6.2f} |")
        print(f"| raw: whole process (imports, load, loop)              | {raw_wall:7.2f} | {n / raw_wall:6.2f} |")
        print(f"| eval: generation only (recorded generation_s)         | {eval_gen:7.2f} | {n / eval_gen:6.2f} |")
        print(
            f"| raw: one-by-one generation loop only                  | {raw['generate_s']:7.2f} | {n / raw['generate_s']:6.2f} |"
        )
        print(
            f"\nrows/s ratio eval/raw: whole command {raw_wall / eval_wall:.2f}x, generation only {raw['generate_s'] / eval_gen:.2f}x "
            f"(target ≥ 2x from batching)"
        )
        print(
            f"raw setup (imports + load) {raw['setup_s']:.2f} s; eval overhead beyond generation {eval_wall - eval_gen:.2f} s "
            f"(CLI, run engine, imports, load, results table)"
        )
        print(f"load average now {os.getloadavg()[0]:.2f}; total script time {time.perf_counter() - t_script:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
