#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one run: at most 9.5 minutes (each step is
# capped; the caps add up to 570 s), plus start-up.
#
#   bash benchmarks/gpu_suite.sh                      # results under benchmarks/results/
#   GPU_SUITE_OUT=/tmp/gpu bash benchmarks/gpu_suite.sh
#   GPU_SUITE_DEVICE=cpu GPU_SUITE_QUICK=1 bash benchmarks/gpu_suite.sh   # a dry run, tiny sizes
#
# In order of importance, each step under its own time limit (a step that overruns is
# stopped, reported and the suite goes on):
#  1. speed with peers, and bfloat16 rows: benchmarks/hdm_speed.py, resnet18 and the small
#     CNN at 224 px, batch 32, with TorchRay's extremal perturbation and pytorch-grad-cam
#     (install them first: pip install -e '.[bench]'; the table says when one is missing);
#  2. CUB scale: benchmarks/cub_scale.py, resnet34 at 224 px with 2000 prototypes, push and
#     benchmark localization with upsample and HDM (fp32, then HDM with bfloat16), the batch
#     chosen from free GPU memory, a sample of pairs extrapolated;
#  3. mixed-precision quality: trains the demo config shortened (or uses GPU_SUITE_RUN, a
#     trained run directory of configs/synthetic_protopnet.yaml, which saves step 3a), then benchmarks/localization_variants.py compares HDM and MDM
#     with and without bfloat16 autocast on the same pairs;
#  4. profiles: benchmarks/hdm_profile.py, MDM on both models (table + Chrome trace);
#  5. torch.compile: benchmarks/hdm_speed.py rows of MDM with one grid, its masked forward
#     compiled (the first calls pay the compilation, outside the timing).
# Everything is written to GPU_SUITE_OUT (default benchmarks/results) with "_cuda" in the
# names, and the log of the whole run to GPU_SUITE_OUT/gpu_suite_<device>.log.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
DEVICE=${GPU_SUITE_DEVICE:-cuda}
OUT=${GPU_SUITE_OUT:-benchmarks/results}
QUICK=${GPU_SUITE_QUICK:-0}
mkdir -p "$OUT"
LOG="$OUT/gpu_suite_${DEVICE}.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ "$QUICK" = 1 ]; then
  SIZE=32; BATCH=4; STEPS=2; ALONE=1
  CUB=(--image-size 64 --classes 4 --prototypes-per-class 2 --push-images 8 --push-batch 4
       --train-images 120 --test-images 116 --pairs 4 --batch 2 --hdm-steps 2)
  TRAIN_SETS=(--set training.pretrain_epochs=1 --set training.epochs=2 --set training.push_start=1
              --set training.last_layer_epochs=1
              --set "data.options={image_size: 64, num_samples: {train: 200, val: 50, test: 80}}")
  IMAGES_PER_PROTOTYPE=1
else
  SIZE=224; BATCH=32; STEPS=20; ALONE=2
  CUB=(--pairs 256)
  TRAIN_SETS=(--set training.pretrain_epochs=4 --set training.epochs=11
              --set training.last_layer_epochs=4)
  IMAGES_PER_PROTOTYPE=2
fi

step() {  # step NAME SECONDS COMMAND...: run under a time limit, log, never abort the suite
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local started=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local status=${PIPESTATUS[0]}
  echo "=== $name: exit $status after $((SECONDS - started))s" | tee -a "$LOG"
}

{
  echo "gpu_suite on $DEVICE, $(date -u), quick=$QUICK"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used \
      --format=csv
} 2>&1 | tee "$LOG"

step "1 speed and peers" 130 "$PYTHON" benchmarks/hdm_speed.py --device "$DEVICE" \
  --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --alone "$ALONE" --mixed-precision \
  --out "$OUT/hdm_speed_peers_${DEVICE}.json"

step "2a CUB scale" 100 "$PYTHON" benchmarks/cub_scale.py --device "$DEVICE" "${CUB[@]}" \
  --out "$OUT/cub_scale_resnet34_${DEVICE}.json"
step "2b CUB scale, HDM bf16" 60 "$PYTHON" benchmarks/cub_scale.py --device "$DEVICE" \
  "${CUB[@]}" --methods hdm --mixed-precision --out "$OUT/cub_scale_resnet34_bf16_${DEVICE}.json"

RUN=${GPU_SUITE_RUN:-runs/gpu_suite_synthetic_${DEVICE}}
if [ ! -f "$RUN/metrics.json" ]; then
  step "3a train the shortened demo config" 90 "$PYTHON" -m protoexplain train \
    synthetic_protopnet --out "$RUN" --set "device=$DEVICE" \
    --set localization.push_method=upsample --set "localization.evaluation_methods=[upsample]" \
    "${TRAIN_SETS[@]}" --no-progress
fi
step "3b mixed-precision quality" 60 "$PYTHON" benchmarks/localization_variants.py "$RUN" \
  --variant "hdm=hdm" --variant "hdm bf16=hdm:mixed_precision=true" \
  --variant "mdm=mdm" --variant "mdm bf16=mdm:mixed_precision=true" \
  --images-per-prototype "$IMAGES_PER_PROTOTYPE" --batch-size 80 --reference hdm \
  --no-progress --out "$OUT/mixed_precision_synthetic_${DEVICE}"

for model in small resnet18; do
  step "4 profile MDM $model" 20 "$PYTHON" benchmarks/hdm_profile.py --device "$DEVICE" \
    --method MDM --model "$model" --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --trace \
    --out "$OUT/hdm_profile_mdm_${model}_${DEVICE}.json"
done

step "5 torch.compile" 90 "$PYTHON" benchmarks/hdm_speed.py --device "$DEVICE" \
  --models small,resnet18 --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --alone 1 \
  --compile default --methods "MDM 1 grid" --out "$OUT/hdm_speed_compile_${DEVICE}.json"

echo "gpu_suite done in ${SECONDS}s; log: $LOG" | tee -a "$LOG"
