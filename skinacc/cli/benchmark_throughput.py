"""Training and inference throughput and memory: FP32 vs fp16 vs bf16, channels-last, torch.compile,
batch sizes, and 1..N processes for speed-up and scaling efficiency.

    # One GPU: sweep precisions, layouts and batch sizes (compile adds slow-starting variants)
    accelerate launch --config_file accelerate_configs/1gpu_fp32.yaml -m skinacc benchmark-throughput \
        --model efficientnet_b3 --compile off on --output_dir outputs/bench_tp
    # ... plus end-to-end training and inference from JPEG files through the real pipeline (precision from
    # the config)
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml -m skinacc benchmark-throughput \
        --e2e_data_dir /data/massive-skin-disease --compute false --batch_sizes 256

    # Scaling: this script launches itself under 1, 2 and 4 processes and merges the results
    python -m skinacc benchmark-throughput --launch_processes 1 2 4 --launch_config accelerate_configs/4gpu_fp32.yaml
    # ... the same on CPU with tiny sizes (two gloo ranks)
    python -m skinacc benchmark-throughput --launch_processes 1 2 --launch_config accelerate_configs/cpu_2proc.yaml \
        --launch_cpu --model test_efficientnet --image_size 64 --batch_sizes 8 32 --steps 3

Launch with mixed precision "no" (the sweep applies autocast itself; the fp32 configs do). Writes
throughput.json, throughput.csv and plots (throughput and memory by precision, speed-up and
efficiency vs processes) to --output_dir.
"""

from __future__ import annotations

import sys

from skinacc.bench.sweep import run_throughput_benchmark
from skinacc.cli.common import parse_args
from skinacc.config.tools import ThroughputArguments


def main(argv: list[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_args((ThroughputArguments,), argv, description=__doc__)
    return run_throughput_benchmark(args, argv)
