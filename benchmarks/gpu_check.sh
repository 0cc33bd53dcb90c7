#!/usr/bin/env bash
# The GPU check of issue #6 as ONE prepared script, for one H200 lent through the workplace's device tool.
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine, from the repo root
#   SMOKE=1 bash benchmarks/gpu_check.sh         # the same steps at toy sizes on a CPU (tests run this)
#   PACK=$OUT bash benchmarks/gpu_check.sh       # on the device tool: results packed into $PACK/gpu_check.tgz
#
# A lease is short (15 minutes of device time, machine start included) and a second try rarely fits, so:
#   * steps run in order of what the issue's targets need most, each under its own time limit, and the
#     whole script stops starting steps once BUDGET_S seconds (default 470) are spent;
#   * a failing or timed-out step is logged and the next one runs (no `set -e`);
#   * after every step the results so far are packed, so a run killed at the tool's limit still brings
#     back everything finished before it;
#   * the last lines printed are the targets table (benchmarks/summarize_gpu_check.py), also written to
#     $OUT/summary.md for BENCHMARKS.md.
#
# The workplace's H200 image (Python 3.12, torch 2.11) lacks `datasets`, `dill` and `multiprocess` (and
# its pyarrow version is not on record): fetch wheels here first with `bash benchmarks/fetch_device_wheels.sh`
# (writes .whl/), then make ONE device `run` call with carry [".whl"], timeout_s 560 and the command
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PACK=$OUT bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
BUDGET_S=${BUDGET_S:-470}
mkdir -p "$OUT/logs"
: >"$OUT/steps.tsv"
PY=${PY:-python3}
ACC=("$PY" -m accelerate.commands.launch)
# skinacc from this checkout (no install needed), plus any carried wheels unpacked to /tmp/site.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled HF_HUB_OFFLINE=1 SKINACC_CACHE=${SKINACC_CACHE:-/tmp/skinacc-cache}
START=$SECONDS
log() { echo "[$(date +%H:%M:%S) +$((SECONDS - START))s] $*"; }

pack() {
  [[ -n "${PACK:-}" ]] || return 0
  mkdir -p "$PACK"
  # JSON, CSV, logs and plots; not the Chrome traces (tens of MB for EfficientNet-B3) or model files.
  tar czf "$PACK/.gpu_check.tgz" --exclude='profile_*.json' --exclude='checkpoints' --exclude='*.safetensors' -C "$OUT" . \
    && mv "$PACK/.gpu_check.tgz" "$PACK/gpu_check.tgz"
}

# step NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, budget left), log to $OUT/logs/NAME.log,
# record NAME, exit status and seconds in $OUT/steps.tsv (124: timed out; "skipped": no budget left).
step() {
  local name=$1 limit=$2 left rc t0
  shift 2
  limit=$((limit * LIMIT_SCALE))
  left=$((BUDGET_S - (SECONDS - START)))
  if ((left < 15)); then
    log "$name: skipped (budget of ${BUDGET_S}s spent)"
    printf '%s\tskipped\t0\n' "$name" >>"$OUT/steps.tsv"
    return 0
  fi
  ((limit > left)) && limit=$left
  log "$name (limit ${limit}s)"
  t0=$SECONDS
  # timeout signals the whole process group: accelerate's launcher and its workers all stop.
  timeout -k 10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$OUT/steps.tsv"
  # The key lines only (progress bars are \r-separated): the reply of the device tool keeps 12k characters.
  tr '\r' '\n' <"$OUT/logs/$name.log" | grep -E "img/s|rror|Traceback|wrote|profiled" | grep -vE "it/s]|s/it]" | tail -n 6
  ((rc == 0)) || log "$name: exit status $rc (124 = time limit) - see logs/$name.log"
  pack
}

if [[ "${SMOKE:-0}" == 1 ]]; then
  MODEL=test_efficientnet; SIZE=64; BATCHES="8 16"; BIG=16; STEPS=2; WARM=1; N_IMG=160; LOAD_IMG=96; WORKERS=1; E2E=3; CFG=cpu; LARGE=400
  # The CPU rehearsal only checks that every step completes: its limits are 3x the GPU's (a cold
  # torch.compile builds C++ kernels for minutes; a busy CI machine is slow).
  LIMIT_SCALE=3
else
  MODEL=efficientnet_b3; SIZE=224; BATCHES="64 256"; BIG=256; STEPS=10; WARM=3; N_IMG=2400; LOAD_IMG=1024; WORKERS=14; E2E=40; CFG=1gpu; LARGE=1200; LIMIT_SCALE=1
fi
# Launch settings: the repo's one-GPU configs; on a CPU (SMOKE) the cpu config with the same mixed
# precision, so the rehearsal runs the bf16 and fp16 code paths too (accelerate autocasts on CPU).
if [[ "$CFG" == 1gpu ]]; then
  FP32_L=(--config_file accelerate_configs/1gpu_fp32.yaml)
  BF16_L=(--config_file accelerate_configs/1gpu_bf16.yaml)
  FP16_L=(--config_file accelerate_configs/1gpu_fp16.yaml)
else
  FP32_L=(--config_file accelerate_configs/cpu.yaml)
  BF16_L=(--config_file accelerate_configs/cpu.yaml --mixed_precision bf16)
  FP16_L=(--config_file accelerate_configs/cpu.yaml --mixed_precision fp16)
fi

{
  "$PY" - <<'PYEOF'
import platform, torch, timm, accelerate, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
print("timm", timm.__version__, "accelerate", accelerate.__version__, "transformers", transformers.__version__)
try:
    import datasets
    print("datasets", datasets.__version__)
except ImportError as e:
    print("MISSING datasets:", e, "- carry its wheels (benchmarks/fetch_device_wheels.sh)")
print("python", platform.python_version(), "cpus", __import__("os").cpu_count(), "date", __import__("datetime").date.today())
PYEOF
  echo "model $MODEL at $SIZE px; JPEGs: $N_IMG synthetic images in 8 classes at 180 px, upscaled to $LARGE px; batch $BIG; $WORKERS loader workers"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
} | tee "$OUT/env.txt"

# 1. JPEG sets: synthetic 8 classes written at 180 px, and the same upscaled to $LARGE px.
step jpegs 90 "$PY" - <<PYEOF
from pathlib import Path
from skinacc.bench import make_large_jpegs
from skinacc.data import SyntheticSpec, generate_synthetic_dataset
small = generate_synthetic_dataset(SyntheticSpec(8, max(8, $N_IMG // 8), 180), "$SKINACC_CACHE")
make_large_jpegs(small, Path("$SKINACC_CACHE") / "large-$LARGE", $LARGE)
print("wrote", small, "and large-$LARGE")
PYEOF
SMALL=$(ls -d "$SKINACC_CACHE"/synthetic/*/ 2>/dev/null | head -1)
LARGE_DIR="$SKINACC_CACHE/large-$LARGE"

# Steps in order of what issue #6 asks of the GPU run: the headline target first, then the compute sweep,
# profile, loading benchmark and torch.compile it names, then the runs that add detail.
# 2. The headline target: end-to-end bf16 training and inference from ${LARGE} px JPEG files.
E2E_ARGS=(recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE --compute false --batch_sizes $BIG
  --e2e_data_dir "$LARGE_DIR" --e2e_batches $E2E --e2e_workers $WORKERS)
step e2e_bf16 120 "${ACC[@]}" "${BF16_L[@]}" "${E2E_ARGS[@]}" --output_dir "$OUT/e2e_bf16"

# 3. Compute on random tensors: fp32/fp16/bf16 x channels-last x batch, training and inference (rows are
#    written as they come, so a time-out keeps the finished ones).
step compute 200 "${ACC[@]}" "${FP32_L[@]}" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE \
  --batch_sizes $BATCHES --steps $STEPS --warmup $WARM --output_dir "$OUT/throughput"

# 4. Where the time goes: a few profiled bf16 steps of the real pipeline.
step profile 90 "${ACC[@]}" "${BF16_L[@]}" recipes/profile_training.py --model $MODEL --no_pretrained --data_dir "$LARGE_DIR" \
  --image_size $SIZE --batch_size $BIG --num_workers $WORKERS --channels_last --test_size 0.05 --val_size 0.05 --verify_images header \
  --warmup_steps 3 --profile_steps 3 --report_to none --profile_dir "$OUT/profile"

# 5. Loading strategies side by side (GPU JPEG decode included where CUDA exists).
step loading 90 "$PY" recipes/benchmark_dataloading.py --data_dir "$SMALL" --large_dir "$LARGE_DIR" \
  --workers $WORKERS --batch_size 64 --max_images $LOAD_IMG --repeats 1 --output_dir "$OUT/loading"

# 6. torch.compile: bf16, channels-last, the large batch (compilation takes a minute or more).
step compile 130 "${ACC[@]}" "${FP32_L[@]}" recipes/benchmark_throughput.py --model $MODEL --image_size $SIZE \
  --batch_sizes $BIG --precisions bf16 --channels_last on --compile on --steps $STEPS --warmup $WARM --output_dir "$OUT/throughput_compile"

# 7. End to end with fp16, and bf16 from the pre-resized cache (decode paid once).
step e2e_fp16 90 "${ACC[@]}" "${FP16_L[@]}" "${E2E_ARGS[@]}" --output_dir "$OUT/e2e_fp16"
step e2e_preresized 90 "${ACC[@]}" "${BF16_L[@]}" "${E2E_ARGS[@]}" --e2e_preresize --output_dir "$OUT/e2e_preresized"

# 8. The training recipe itself, one short epoch each with the bf16 and fp16 launch configs: its own
#    images/s, data wait and peak memory, to set beside the benchmark's.
train_run() {
  local name=$1
  shift
  step "$name" 90 "${ACC[@]}" "$@" recipes/train.py --model $MODEL --no_pretrained --data_dir "$LARGE_DIR" \
    --image_size $SIZE --batch_size $BIG --num_workers $WORKERS --channels_last --epochs 1 --max_steps_per_epoch $E2E \
    --verify_images header --report_to none --eval_test false --output_dir "$OUT/$name"
}
train_run train_bf16 "${BF16_L[@]}"
train_run train_fp16 "${FP16_L[@]}"

log "steps:"; column -t "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
"$PY" benchmarks/summarize_gpu_check.py "$OUT" | tee "$OUT/summary.md"
pack
log "done: $OUT${PACK:+ (packed into $PACK/gpu_check.tgz)}"
