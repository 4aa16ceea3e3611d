#!/usr/bin/env bash
# `make demo`: the spec's "Example: Complete Workflow", offline on CPU with a tiny LLaVA built locally,
# on a synthetic task whose answer depends only on the image (the colour of a drawn shape).
# Ends with `mixtrain eval create` (base vs fine-tuned on held-out images) and prints the accuracy before and
# after from the eval record. Exits non-zero when any step fails or the after-accuracy is below 90%.
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

step "Register the base model (to compare against it)"
mixtrain model register tiny-llava-base --base_model "$DEMO/tiny-llava" --model_type llava
cp "$DEMO/task/test.csv" "$DEMO/held_out.csv"
cp "$DEMO/task/test_blank.csv" "$DEMO/held_out_blank.csv"
(cd "$DEMO" && mixtrain dataset create held-out --file held_out.csv >/dev/null && mixtrain dataset create held-out-blank --file held_out_blank.csv >/dev/null)

step "3. mixtrain workflow run vlm-finetune ... (real Axolotl, LoRA on the language model, CPU)"
# Shown filtered (library warnings), but the run's own exit status decides whether the demo goes on.
set +e
mixtrain workflow run vlm-finetune \
  --dataset_name vlm-training-data \
  --output_model_name my-custom-llava \
  --base_model "$DEMO/tiny-llava" \
  --num_epochs ${DEMO_EPOCHS:-20} \
  --batch_size 4 \
  --gradient_accumulation_steps 1 \
  --learning_rate ${DEMO_LR:-3e-3} \
  --lora_r 16 --lora_alpha 32 --lora_dropout 0.0 \
  --max_seq_length 256 2>&1 | grep --line-buffered -v -E '^\s+("|[]}])|Failed to load .*torchao|_pytree.py|UserWarning|super\(\).__init__'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "demo: the fine-tune step failed (exit $status) — see the output above and: mixtrain workflow runs vlm-finetune" >&2
  exit "$status"
fi

step "4. mixtrain workflow runs vlm-finetune"
mixtrain workflow runs vlm-finetune

step "5. mixtrain model get my-custom-llava / model run"
mixtrain model get my-custom-llava
IMG=$(python -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['image'])" "$DEMO/task/test.jsonl")
mixtrain model run my-custom-llava --inputs "{\"image\": \"$IMG\", \"prompt\": \"What colour is the shape?\"}"

step "6. mixtrain eval create colour-eval --dataset held-out --models tiny-llava-base,my-custom-llava"
mixtrain eval create colour-eval --dataset held-out --models tiny-llava-base,my-custom-llava --config '{"max_new_tokens": 8}'

step "Control: the fine-tuned model on the same prompts with blank images (nothing to read: chance is 1/6)"
mixtrain eval create colour-blank --dataset held-out-blank --models my-custom-llava --config '{"max_new_tokens": 8}' >/dev/null
mixtrain eval get colour-blank

step "Before and after, from the eval record"
python - <<'PY'
import sys
from mixtrain import MixClient

rec = MixClient().get_eval_info("colour-eval")
blank = MixClient().get_eval_info("colour-blank")["scores"]["my-custom-llava_v1"]["mean"]
before, after = (rec["scores"][m["label"]] for m in rec["models"])
print(f"blank-image control: {blank:.0%} (chance 17%)")
ok = after["mean"] >= 0.90 and blank <= 0.30
if not ok:
    print("demo: FAILED — the fine-tuned model should reach 90% on held-out images and stay near chance on blank ones", file=sys.stderr)
print(f"held-out colour accuracy ({after['n']} images, 6 colours): before {before['mean']:.0%} -> after {after['mean']:.0%}")
sys.exit(0 if ok else 1)
PY
