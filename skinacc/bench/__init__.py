"""Benchmarks: input-pipeline strategies (:mod:`.loading`) and model throughput (:mod:`.throughput`).

The recipes ``benchmark_dataloading.py`` and ``benchmark_throughput.py`` parse flags, call these and
write the results; the measuring lives here.
"""

from skinacc.bench.loading import LOADER_STRATEGIES, make_large_jpegs, run_loader_benchmark, time_batches
from skinacc.bench.throughput import measure_compute, measure_end_to_end, repeated_loader

__all__ = [
    "LOADER_STRATEGIES",
    "make_large_jpegs",
    "measure_compute",
    "measure_end_to_end",
    "repeated_loader",
    "run_loader_benchmark",
    "time_batches",
]
