"""The preflight's memory estimate beside what training really took, on this machine (CPU), in one run.

    .venv/bin/python benchmarks/bench_memory.py [--steps 4]

For Qwen2-VL models built locally at two sizes (the tests' tiny one, and a ~0.1B one whose weights and
optimizer dominate), each trained a few LoRA steps through ``mixtrain workflow run``: the estimate the
preflight printed (vlm/memory.py: weights, LoRA + AdamW, activations, logits; no GPU overhead on CPU)
and the measured growth of the training process's peak resident memory from just before the model
loads (what the run records beside the estimate). Prints GiB and estimate/measured. Memory, not time:
the figures do not depend on the machine's load. Asserts nothing.

On a GPU the same run records PyTorch's peak reserved memory instead; the 7B figures against published
ones are in tests/e2e/test_memory_estimate.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import EXAMPLES, MIXTRAIN, bench_env, timed

SIZES = {
    "tiny (tests)": {},
    "small (~0.1B)": {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "vision_hidden_size": 256,
        "vision_intermediate_size": 1024,
        "vision_num_hidden_layers": 4,
        "vision_num_attention_heads": 4,
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    from mixtrain.testing.colour_task import make_task
    from mixtrain.testing.tiny_vlm import build_tiny_vlm

    tmp = Path(tempfile.mkdtemp(prefix="mixtrain-bench-memory-"))
    try:
        env = bench_env(tmp / "home")
        task = make_task(tmp / "task", n_train=16, n_test=2, size=112)
        timed([MIXTRAIN, "dataset", "create", "colours", "--file", task["train_csv"]], env)
        timed([MIXTRAIN, "workflow", "create", "axolotl_vlm_finetune.py", "--name", "ft"], env, cwd=EXAMPLES)
        print("| model | parameters | estimate GiB (parts) | measured GiB | estimate/measured |")
        print("|-------|------------|----------------------|--------------|-------------------|")
        for i, (label, sizes) in enumerate(SIZES.items()):
            model = build_tiny_vlm("qwen2_vl", tmp / f"model{i}", **sizes)
            cmd = [MIXTRAIN, "workflow", "run", "ft", "--dataset_name", "colours", "--output_model_name", f"m{i}"]
            cmd += ["--base_model", str(model), "--model_type", "qwen2_vl", "--max_steps", str(args.steps)]
            cmd += [
                "--batch_size",
                "2",
                "--gradient_accumulation_steps",
                "1",
                "--lora_r",
                "8",
                "--max_seq_length",
                "512",
            ]
            timed(cmd, env)
            runs = json.loads(timed([MIXTRAIN, "workflow", "runs", "ft", "--json"], env)[1].stdout)
            run_dir = Path(max(runs, key=lambda r: r["number"])["run_dir"])
            mem = json.loads((run_dir / "preflight.json").read_text())["memory"]
            import torch
            from transformers import AutoConfig, AutoModelForImageTextToText

            with torch.device("meta"):
                params = sum(
                    p.numel()
                    for p in AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(model)).parameters()
                )
            parts = ", ".join(f"{k} {v:.3f}" for k, v in mem["parts_gib"].items() if v)
            ratio = mem["total_gib"] / mem["measured_gib"] if mem["measured_gib"] else float("nan")
            print(
                f"| {label} | {params / 1e6:.1f} M | {mem['total_gib']:.3f} ({parts}) | {mem['measured_gib']:.3f} | {ratio:.2f} |",
                flush=True,
            )
        print(f"\nmeasured: {mem['measured']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
