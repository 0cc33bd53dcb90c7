"""Profile a few training steps of the real pipeline with torch.profiler, through accelerate.

    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/profile_training.py --model efficientnet_b3 --no_pretrained
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml --mixed_precision no \
        recipes/profile_training.py --model test_efficientnet --no_pretrained --image_size 64      # includes gloo all-reduce

Writes to --profile_dir: profile_<rank>.json (Chrome traces, written by accelerate: open in
chrome://tracing or ui.perfetto.dev), summary.json (top operators, time by category, kernel launch counts and mean durations, memory,
data-wait and all-reduce time), operator_time.png, kernel_launches.png, kernel_mean_duration.png.
The steps run through the same skinacc.engine.train_one_epoch as training, so the images/s and
data-wait figures printed here are the training recipe's own.

This script is ``skinacc profile`` (``python -m skinacc profile``, or ``accelerate launch ... -m skinacc
profile``): it runs :mod:`skinacc.cli.profile`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("profile")
