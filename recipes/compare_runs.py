"""Compare training runs side by side: accuracy, images/s, speed-up and scaling efficiency vs processes,
FP32 vs fp16/bf16 throughput and memory.

    python recipes/compare_runs.py --runs outputs/b3_1gpu_fp32 outputs/b3_1gpu_fp16 outputs/b3_4gpu_fp16 --output_dir outputs/compare
    python recipes/compare_runs.py --runs my-team/skinacc/abc123 my-team/skinacc/def456   # online W&B runs

A run is a skinacc output directory, an offline W&B run folder, or a W&B run path entity/project/run_id.
Runs are labelled by folder (by path where folder names repeat), and ``differs`` lists the options in
which each differs from the others. Speed-up and scaling efficiency are computed only between process
counts of otherwise equal runs (NaN where a set-up ran at one process count). Writes comparison.csv,
comparison.md and PNG plots to --output_dir.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from _cli import parse_args, run

from skinacc.plots import plot_run_comparison
from skinacc.tracking import compare_records, label_differences, records_markdown, run_record

COLUMNS = [
    "run",
    "differs",
    "model",
    "processes",
    "precision",
    "compile",
    "batch_per_process",
    "epochs",
    "images_per_sec",
    "speedup",
    "scaling_efficiency",
    "throughput_vs_fp32",
    "peak_mem_mb",
    "memory_vs_fp32",
    "data_wait_pct",
    "best_val_accuracy",
    "test_accuracy",
    "test_balanced_accuracy",
]


@dataclass
class CompareArguments:
    """Which runs to compare."""

    runs: list[str] = field(
        default_factory=list,
        metadata={"help": "Output dirs, offline W&B run dirs, or entity/project/run_id paths."},
    )
    output_dir: str = field(default="outputs/compare", metadata={"help": "Where the table and plots go."})

    def validate(self) -> list[str]:
        return [] if self.runs else ["--runs: give at least one run"]


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((CompareArguments,), argv, description=__doc__)
    rows = label_differences([run_record(r) for r in args.runs])
    # Scaling only across process counts of otherwise equal set-ups; precision vs the same set-up's fp32.
    rows = compare_records(rows, ("setup", "precision", "compile"))
    rows.sort(key=lambda r: (str(r["model"]), r["precision"], r["processes"]))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "comparison.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    table = records_markdown(rows, COLUMNS)
    (out / "comparison.md").write_text(table)
    print(table)
    for p in plot_run_comparison(rows, out):
        print(p)
    return rows


if __name__ == "__main__":
    run(main)
