"""Compare training runs side by side: accuracy, images/s, speed-up and scaling efficiency vs processes,
FP32 vs fp16/bf16 throughput and memory.

    python recipes/compare_runs.py --runs outputs/b3_1gpu_fp32 outputs/b3_1gpu_fp16 outputs/b3_4gpu_fp16 --output_dir outputs/compare
    skinacc compare-runs --runs my-team/skinacc/abc123 my-team/skinacc/def456   # online W&B runs
    # Two models on the same test images: each metric's difference with a lesion-resampled CI
    skinacc compare-runs --runs outputs/dermoscopy outputs/baseline --paired_split test

A run is a skinacc output directory, an offline W&B run folder, or a W&B run path entity/project/run_id.
Runs are labelled by folder (by path where folder names repeat), and ``differs`` lists the options in
which each differs from the others. Speed-up and scaling efficiency are computed only between process
counts of otherwise equal runs (NaN where a set-up ran at one process count). Writes comparison.csv,
comparison.md and PNG plots to --output_dir.
"""

from __future__ import annotations

from skinacc.cli.common import parse_args
from skinacc.compare import compare_runs, paired_comparison, write_paired
from skinacc.config.tools import CompareArguments


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((CompareArguments,), argv, description=__doc__)
    rows, table, plots = compare_runs(args.runs, args.output_dir)
    print(table)
    for p in plots:
        print(p)
    if args.paired_split:
        paired = paired_comparison(args.runs, args.paired_split, args.bootstrap)
        path, text = write_paired(paired, args.output_dir)
        print(
            f"paired on {args.paired_split} (whole {paired[0]['unit']} groups resampled, {args.bootstrap} times):"
        )
        print(text)
        print(path)
    return rows
