"""Profile a few training steps of the real pipeline with torch.profiler, through accelerate.

    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml -m skinacc profile --model efficientnet_b3 --no_pretrained
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml --mixed_precision no \
        recipes/profile_training.py --model test_efficientnet --no_pretrained --image_size 64      # includes gloo all-reduce

Writes to --profile_dir: profile_<rank>.json (Chrome traces, written by accelerate: open in
chrome://tracing or ui.perfetto.dev), summary.json (top operators, time by category, kernel launch counts and mean durations, memory,
data-wait and all-reduce time), operator_time.png, kernel_launches.png, kernel_mean_duration.png.
The steps run through the same skinacc.engine.train_one_epoch as training, so the images/s and
data-wait figures printed here are the training recipe's own.
"""

from __future__ import annotations

from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config import DataArguments, LoggingArguments, ModelArguments, TrainArguments
from skinacc.config.tools import ProfileArguments
from skinacc.profiling import profile_training


def main(argv: list[str] | None = None) -> dict[str, Any]:
    configs = parse_args(
        (ProfileArguments, DataArguments, ModelArguments, TrainArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults={"report_to": "none"},
    )
    return profile_training(*configs)
