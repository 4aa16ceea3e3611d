#!/usr/bin/env bash
# `make demo`: the spec's "Example: Complete Workflow", offline on CPU with a tiny LLaVA built locally,
# on a synthetic task whose answer depends only on the image (the colour of a drawn shape).
# Ends by printing held-out accuracy before and after fine-tuning.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$REPO/.venv/bin:$PATH"
export MIXTRAIN_HOME=${MIXTRAIN_DEMO_HOME:-$REPO/.demo/home}
export HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
# A tiny model trains several times faster on one torch thread here, and reproducibly.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
DEMO=$(dirname "$MIXTRAIN_HOME")
rm -rf "$MIXTRAIN_HOME" "$DEMO/task" "$DEMO/tiny-llava"
mkdir -p "$DEMO"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "0. A tiny random LLaVA (built offline) and a colour-of-the-shape task (6 colours, held-out renderings)"
python -m mixtrain.testing.tiny_vlm --family llava --out "$DEMO/tiny-llava" >/dev/null
python -m mixtrain.testing.colour_task --out "$DEMO/task" --train ${DEMO_TRAIN:-192} --test 48 >/dev/null
head -3 "$DEMO/task/train.csv"

step "1. mixtrain dataset create vlm-training-data --file training_data.csv"
cp "$DEMO/task/train.csv" "$DEMO/training_data.csv"
(cd "$DEMO" && mixtrain dataset create vlm-training-data --file training_data.csv)
mixtrain dataset list

step "2. mixtrain workflow create axolotl_vlm_finetune.py --name vlm-finetune"
(cd src/mixtrain/examples && mixtrain workflow create axolotl_vlm_finetune.py --name vlm-finetune --description "Fine-tune VLMs with Axolotl")

step "Before: held-out accuracy of the base model"
mixtrain model register tiny-llava-base --base_model "$DEMO/tiny-llava" --model_type llava
mixtrain model run tiny-llava-base --config '{"max_new_tokens": 8}' --inputs-file "$DEMO/task/test.jsonl" --output "$DEMO/before.jsonl"

step "3. mixtrain workflow run vlm-finetune ... (real Axolotl, LoRA on the language model, CPU)"
mixtrain workflow run vlm-finetune \
  --dataset_name vlm-training-data \
  --output_model_name my-custom-llava \
  --base_model "$DEMO/tiny-llava" \
  --num_epochs ${DEMO_EPOCHS:-20} \
  --batch_size 4 \
  --gradient_accumulation_steps 1 \
  --learning_rate ${DEMO_LR:-3e-3} \
  --lora_r 16 --lora_alpha 32 --lora_dropout 0.0 \
  --max_seq_length 256 2>&1 | grep -v -E '^\s+("|[]}])|Failed to load .*torchao|_pytree.py|UserWarning|super\(\).__init__' || true

step "4. mixtrain workflow runs vlm-finetune"
mixtrain workflow runs vlm-finetune

step "5. mixtrain model get my-custom-llava / model run"
mixtrain model get my-custom-llava
IMG=$(python -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['image'])" "$DEMO/task/test.jsonl")
mixtrain model run my-custom-llava --inputs "{\"image\": \"$IMG\", \"prompt\": \"What colour is the shape?\"}"

step "After: held-out accuracy of the fine-tuned model"
mixtrain model run my-custom-llava --config '{"max_new_tokens": 8}' --inputs-file "$DEMO/task/test.jsonl" --output "$DEMO/after.jsonl"
python - "$DEMO" <<'PY'
import sys
from pathlib import Path
from mixtrain.testing.colour_task import accuracy
d = Path(sys.argv[1])
before, after = accuracy(d / "before.jsonl", d / "task/test_answers.json"), accuracy(d / "after.jsonl", d / "task/test_answers.json")
print(f"held-out colour accuracy (48 images, 6 colours): before {before:.0%} -> after {after:.0%}")
PY
