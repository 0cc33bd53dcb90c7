#!/usr/bin/env bash
# The GPU check of issue #6 as ONE prepared script (planned to fit in < 8 minutes on one H200).
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine, from the repo root
#   SMOKE=1 bash benchmarks/gpu_check.sh         # the same steps at toy sizes on a CPU (checks the script)
#   PACK=$OUT bash benchmarks/gpu_check.sh       # on the device tool: also pack the results into $PACK/gpu_check.tgz
#
# Results (JSON, CSV, PNG) go to $OUT (default outputs/gpu_check). The workplace's H200 image (Python
# 3.12) has torch, torchvision, timm, transformers, accelerate, pyarrow and xxhash but not `datasets`:
# here, download `datasets`, `dill` and `multiprocess` wheels for cp312 manylinux into .whl/ (device
# README), carry .whl, and start the device command with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# then: PACK=$OUT bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
PY=${PY:-python3}
ACC=("$PY" -m accelerate.commands.launch)
# skinacc from this checkout (no install needed), plus any carried wheels unpacked to /tmp/site.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 SKINACC_CACHE=${SKINACC_CACHE:-/tmp/skinacc-cache}
log() { echo "[$(date +%H:%M:%S)] $*"; }

if [[ "${SMOKE:-0}" == 1 ]]; then
  MODEL=test_efficientnet; SIZE=64; BATCHES="8 16"; STEPS=2; WARM=1; N_IMG=160; WORKERS=1; E2E=3; CFG=cpu; LARGE=400
else
  MODEL=efficientnet_b3; SIZE=224; BATCHES="64 256"; STEPS=25; WARM=8; N_IMG=2400; WORKERS=14; E2E=40; CFG=1gpu; LARGE=1200
fi
$PY - <<PYEOF | tee "$OUT/env.txt"
import torch, platform
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
print("python", platform.python_version())
PYEOF

log "1/5 JPEG sets: synthetic 8 classes, written at 180 px and upscaled to ${LARGE} px"
$PY - <<PYEOF
from pathlib import Path
from skinacc.bench import make_large_jpegs
from skinacc.data import SyntheticSpec, generate_synthetic_dataset
small = generate_synthetic_dataset(SyntheticSpec(8, max(8, $N_IMG // 8), 180), "$SKINACC_CACHE")
make_large_jpegs(small, Path("$SKINACC_CACHE") / "large-$LARGE", $LARGE)
print(small)
PYEOF
SMALL=$(ls -d "$SKINACC_CACHE"/synthetic/*/ | head -1)
LARGE_DIR="$SKINACC_CACHE/large-$LARGE"

FP32_CFG=accelerate_configs/${CFG}.yaml; BF16_CFG=accelerate_configs/${CFG}.yaml; FP16_CFG=accelerate_configs/${CFG}.yaml
if [[ "$CFG" == 1gpu ]]; then FP32_CFG=accelerate_configs/1gpu_fp32.yaml; BF16_CFG=accelerate_configs/1gpu_bf16.yaml; FP16_CFG=accelerate_configs/1gpu_fp16.yaml; fi

log "2/5 compute throughput: fp32/fp16/bf16 x channels-last x batch, train and infer, compile for bf16+CL"
"${ACC[@]}" --config_file "$FP32_CFG" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE \
  --batch_sizes $BATCHES --steps $STEPS --warmup $WARM --output_dir "$OUT/throughput"
"${ACC[@]}" --config_file "$FP32_CFG" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE \
  --batch_sizes ${BATCHES##* } --precisions bf16 --channels_last on --compile on --steps $STEPS --warmup $WARM --output_dir "$OUT/throughput_compile"

log "3/5 end to end from JPEG files through skinacc's pipeline (bf16 and fp16 from the launch configs)"
for cfgp in "$BF16_CFG" "$FP16_CFG"; do
  "${ACC[@]}" --config_file "$cfgp" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE --modes train \
    --precisions fp32 --channels_last off --batch_sizes ${BATCHES##* } --steps 1 --warmup 1 \
    --e2e_data_dir "$LARGE_DIR" --e2e_batches $E2E --e2e_workers $WORKERS --output_dir "$OUT/e2e_$(basename "$cfgp" .yaml)"
done

"${ACC[@]}" --config_file "$BF16_CFG" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE --modes train \
  --precisions fp32 --channels_last off --batch_sizes ${BATCHES##* } --steps 1 --warmup 1 --e2e_preresize \
  --e2e_data_dir "$LARGE_DIR" --e2e_batches $E2E --e2e_workers $WORKERS --output_dir "$OUT/e2e_preresized"

log "4/5 data loading strategies (GPU JPEG decode included where CUDA exists)"
$PY recipes/benchmark_dataloading.py --data_dir "$SMALL" --large_size $LARGE --large_per_class $((N_IMG / 8)) \
  --workers $WORKERS --batch_size 64 --max_images $((N_IMG - 64 > 64 ? N_IMG - 64 : 64)) --repeats 1 --output_dir "$OUT/loading"

log "5/5 profile a few bf16 training steps of the real pipeline, and short fp16/bf16 training runs"
"${ACC[@]}" --config_file "$BF16_CFG" recipes/profile_training.py --model $MODEL --no_pretrained --data_dir "$LARGE_DIR" \
  --image_size $SIZE --batch_size ${BATCHES##* } --num_workers $WORKERS --test_size 0.05 --val_size 0.05 --verify_images header \
  --warmup_steps 3 --profile_steps 3 --report_to none --profile_dir "$OUT/profile"
for cfgp in "$FP16_CFG" "$BF16_CFG"; do
  "${ACC[@]}" --config_file "$cfgp" recipes/train.py --model $MODEL --no_pretrained --data_dir "$LARGE_DIR" --image_size $SIZE \
    --batch_size ${BATCHES##* } --num_workers $WORKERS --epochs 1 --max_steps_per_epoch $E2E --verify_images header --report_to none \
    --eval_test false --output_dir "$OUT/train_$(basename "$cfgp" .yaml)"
done
log "done: $OUT"
# One archive of the results for the device tool's $OUT (at most 8 files come back): JSON, CSV and
# plots, without the Chrome traces (tens of MB for EfficientNet-B3).
if [[ -n "${PACK:-}" ]]; then
  mkdir -p "$PACK"
  tar czf "$PACK/gpu_check.tgz" --exclude='profile_*.json' --exclude='checkpoints' --exclude='*.safetensors' -C "$OUT" .
  log "packed $PACK/gpu_check.tgz ($(du -h "$PACK/gpu_check.tgz" | cut -f1))"
fi
