"""Benchmark data-loading strategies side by side: same files, same transforms, same workers.

Small JPEGs are the real ISIC set (180 px) when present, else the synthetic set; large JPEGs are the
same images upscaled to 1200 px (the Kaggle originals are far larger than the 256 px the model sees).

    python recipes/benchmark_dataloading.py --output_dir outputs/bench_loading
    python recipes/benchmark_dataloading.py --data_dir ../shared/data/isic8-dermoscopy --workers 2 --max_images 768

Writes ``loading.json``, ``loading.csv`` and ``loading.png`` to ``--output_dir``.

This script is ``skinacc benchmark-loading`` (``python -m skinacc benchmark-loading``, or ``accelerate launch ... -m skinacc
benchmark-loading``): it runs :mod:`skinacc.cli.benchmark_loading`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("benchmark-loading")
