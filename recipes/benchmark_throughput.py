"""Training and inference throughput and memory: FP32 vs fp16 vs bf16, channels-last, torch.compile,
batch sizes, and 1..N processes for speed-up and scaling efficiency.

    # One GPU: sweep precisions, layouts and batch sizes (compile adds slow-starting variants)
    accelerate launch --config_file accelerate_configs/1gpu_fp32.yaml recipes/benchmark_throughput.py \
        --model efficientnet_b3 --compile off on --output_dir outputs/bench_tp
    # ... plus end-to-end training and inference from JPEG files through the real pipeline (precision from
    # the config)
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/benchmark_throughput.py \
        --e2e_data_dir /data/massive-skin-disease --compute false --batch_sizes 256

    # Scaling: this script launches itself under 1, 2 and 4 processes and merges the results
    python recipes/benchmark_throughput.py --launch_processes 1 2 4 --launch_config accelerate_configs/4gpu_fp32.yaml
    # ... the same on CPU with tiny sizes (two gloo ranks)
    python recipes/benchmark_throughput.py --launch_processes 1 2 --launch_config accelerate_configs/cpu_2proc.yaml \
        --launch_cpu --model test_efficientnet --image_size 64 --batch_sizes 8 32 --steps 3

Launch with mixed precision "no" (the sweep applies autocast itself; the fp32 configs do). Writes
throughput.json, throughput.csv and plots (throughput and memory by precision, speed-up and
efficiency vs processes) to --output_dir.

This script is ``skinacc benchmark-throughput`` (``python -m skinacc benchmark-throughput``, or ``accelerate launch ... -m skinacc
benchmark-throughput``): it runs :mod:`skinacc.cli.benchmark_throughput`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("benchmark-throughput")
