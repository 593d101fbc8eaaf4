#!/usr/bin/env bash
# CPU end-to-end comparison of the weight-level unlearning baselines on TOFU forget01.
# A benchmark, not CI: it prints the results table and per-step wall times. Documented in
# evals/baselines/README.md. Override any variable from the environment, e.g.
#   AUTHORS=4 EPOCHS=3 UNLEARN_STEPS=10 METHODS="ga npo" benchmarks/baselines_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1
export NESCIO_DATA_DIR="${NESCIO_DATA_DIR:-../shared/data}"
export NESCIO_VLLM_PYTHON="${NESCIO_VLLM_PYTHON:-.nescio/vllm-venv/bin/python}"
BASE="${BASE:-.nescio/models/smollm2-135m-instruct}"
OUT="${OUT:-runs/baselines_cpu}"
AUTHORS="${AUTHORS:-4}"               # target model: forget01's 2 authors + AUTHORS-2 retain authors
EPOCHS="${EPOCHS:-3}"
FT_LR="${FT_LR:-2e-4}"
UNLEARN_STEPS="${UNLEARN_STEPS:-10}"
UNLEARN_LR="${UNLEARN_LR:-5e-5}"
METHODS="${METHODS:-ga graddiff npo simnpo idk rmu}"
NESCIO="${NESCIO:-.venv/bin/nescio}"
RETAIN_AUTHORS=$((AUTHORS - 2))

stamp() { date +%s; }
t0=$(stamp)
$NESCIO finetune --split full --authors "$AUTHORS" --epochs "$EPOCHS" --lr "$FT_LR" \
  --batch-size 8 --base "$BASE" --out "$OUT/target"
$NESCIO finetune --split retain99 --authors "$RETAIN_AUTHORS" --epochs "$EPOCHS" --lr "$FT_LR" \
  --batch-size 8 --base "$BASE" --out "$OUT/retain"
echo "fine-tuning: $(( $(stamp) - t0 )) s"

checkpoints=(--checkpoint "target=$OUT/target")
for method in $METHODS; do
  t=$(stamp)
  $NESCIO unlearn --method "$method" --model "$OUT/target" --forget forget01 \
    --retain retain99 --retain-authors "$RETAIN_AUTHORS" --max-steps "$UNLEARN_STEPS" \
    --lr "$UNLEARN_LR" --out "$OUT/$method"
  echo "unlearn $method: $(( $(stamp) - t )) s"
  checkpoints+=(--checkpoint "$method=$OUT/$method")
done

t=$(stamp)
$NESCIO compare --retain-model "$OUT/retain" "${checkpoints[@]}" --forget forget01 \
  --retain retain99 --retain-authors "$RETAIN_AUTHORS" --retain-items 40 --utility-items 25 \
  --max-tokens 48 --server cpu --out "$OUT/compare"
echo "compare: $(( $(stamp) - t )) s; total: $(( $(stamp) - t0 )) s"
