"""Regenerate every plot of a run directory from the files it holds (no model, no data needed).

    python recipes/plots.py --run_dir outputs/demo

Redraws training_curves.png (from history.json), the evaluation plots of every eval_*/ folder (from
its predictions.csv), and benchmark plots (loading.json, throughput.json) found in the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from _cli import parse_args, run

from skinacc import plots
from skinacc.metrics import compute_all
from skinacc.metrics.report import plot_evaluation, read_predictions


@dataclass
class PlotArguments:
    """Which run to redraw."""

    run_dir: str = field(default="outputs/demo", metadata={"help": "A skinacc output directory."})

    def validate(self) -> list[str]:
        return [] if Path(self.run_dir).is_dir() else [f"--run_dir={self.run_dir!r}: no such directory"]


def main(argv: list[str] | None = None) -> list[Path]:
    (args,) = parse_args((PlotArguments,), argv, description=__doc__)
    root = Path(args.run_dir)
    made: list[Path] = []
    if (root / "history.json").is_file():
        history = json.loads((root / "history.json").read_text())
        if history:
            made.append(plots.plot_training_curves(history, root / "training_curves.png"))
    for pred in sorted(root.glob("eval_*/predictions.csv")):
        labels, probs, names, _ = read_predictions(pred)
        made += plot_evaluation(pred.parent, labels, probs, names, compute_all(labels, probs, names))
    for bench in sorted(root.rglob("loading.json")):
        made.append(
            plots.plot_loader_benchmark(json.loads(bench.read_text())["results"], bench.with_suffix(".png"))
        )
    for bench in sorted(root.rglob("throughput.json")):
        made += plots.plot_throughput_benchmark(json.loads(bench.read_text())["results"], bench.parent)
    for prof in sorted(root.rglob("summary.json")):
        data = json.loads(prof.read_text())
        if "kernels_by_launches" in data:
            made += plots.plot_profile(data, prof.parent)
    if not made:
        raise ValueError(
            f"--run_dir={args.run_dir!r}: found nothing to plot (history.json, eval_*/predictions.csv, loading.json, throughput.json)"
        )
    for p in made:
        print(p)
    return made


if __name__ == "__main__":
    run(main)
