"""Benchmark data-loading strategies side by side: same files, same transforms, same workers.

Small JPEGs are the real ISIC set (180 px) when present, else the synthetic set; large JPEGs are the
same images upscaled to 1200 px (the Kaggle originals are far larger than the 256 px the model sees).

    skinacc benchmark-loading --output_dir outputs/bench_loading
    skinacc benchmark-loading --data_dir ../shared/data/isic8-dermoscopy --workers 2 --max_images 768

Writes ``loading.json``, ``loading.csv`` and ``loading.png`` to ``--output_dir``.
"""

from __future__ import annotations

from skinacc.bench.loading import run_loading_benchmark
from skinacc.cli.common import parse_args
from skinacc.config.tools import LoadingBenchArguments


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((LoadingBenchArguments,), argv, description=__doc__)
    return run_loading_benchmark(args)
