"""Train a skin-disease classifier with Accelerate: DDP, mixed precision and dynamo from YAML.

Launch settings (processes, precision, compile) come only from ``accelerate_configs/*.yaml``;
hyper-parameters from the recipe config and flags (defaults < --config YAML < flags).

    # CPU demo on the embedded synthetic set (a few minutes), as `make demo` runs it
    accelerate launch -q --config_file accelerate_configs/cpu.yaml --num_cpu_threads_per_process 2 recipes/train.py --config recipes/configs/demo.yaml

    # The recommended dermoscopy recipe on real images split by lesion, one GPU in bf16; then the
    # final model on train + validation
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/train.py --config recipes/configs/dermoscopy.yaml
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/train.py --config recipes/configs/dermoscopy.yaml \
        --final_fit --calibrate false --output_dir outputs/dermoscopy_final

    # The seed's recipe: EfficientNet-B3, 4 GPUs, fp16 DDP, batch 64 per GPU
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/train.py \
        --config recipes/configs/seed_b3.yaml --data_dir /data/massive-skin-disease

    # DDP on CPU with two real gloo ranks (for testing)
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml \
        --mixed_precision no recipes/train.py --model test_efficientnet --no_pretrained

    # Stop with SIGTERM or Ctrl+C (a checkpoint is saved at the next step), then resume exactly there
    accelerate launch ... recipes/train.py ... --resume_from_checkpoint latest

This script is ``skinacc train`` (``python -m skinacc train``, or ``accelerate launch ... -m skinacc
train``): it runs :mod:`skinacc.cli.train`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("train")
