"""Compare training runs side by side: accuracy, images/s, speed-up and scaling efficiency vs processes,
FP32 vs fp16/bf16 throughput and memory.

    python recipes/compare_runs.py --runs outputs/b3_1gpu_fp32 outputs/b3_1gpu_fp16 outputs/b3_4gpu_fp16 --output_dir outputs/compare
    python recipes/compare_runs.py --runs my-team/skinacc/abc123 my-team/skinacc/def456   # online W&B runs

A run is a skinacc output directory, an offline W&B run folder, or a W&B run path entity/project/run_id.
Runs are labelled by folder (by path where folder names repeat), and ``differs`` lists the options in
which each differs from the others. Speed-up and scaling efficiency are computed only between process
counts of otherwise equal runs (NaN where a set-up ran at one process count). Writes comparison.csv,
comparison.md and PNG plots to --output_dir.

This script is ``skinacc compare-runs`` (``python -m skinacc compare-runs``, or ``accelerate launch ... -m skinacc
compare-runs``): it runs :mod:`skinacc.cli.compare_runs`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("compare-runs")
