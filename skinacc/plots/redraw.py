"""Every plot of a run folder redrawn from its files (no model, no data needed): training curves from
history.json, each eval_*/ folder's plots from its predictions.csv, benchmark and profile plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

from skinacc.plots.benchmarks import plot_loader_benchmark, plot_profile, plot_throughput_benchmark
from skinacc.plots.training import plot_training_curves

__all__ = ["redraw_run"]


def redraw_run(run_dir: str | os.PathLike) -> list[Path]:
    """Redraw every plot of a run folder from the files it holds (``skinacc plots``); the PNGs written.

    Raises:
        ValueError: Nothing in the folder to plot.
    """
    from skinacc.metrics import compute_all
    from skinacc.metrics.report import read_predictions
    from skinacc.plots.evaluation import plot_evaluation

    root = Path(run_dir)
    made: list[Path] = []
    if (root / "history.json").is_file():
        history = json.loads((root / "history.json").read_text())
        if history:
            made.append(plot_training_curves(history, root / "training_curves.png"))
    for pred in sorted(root.glob("eval_*/predictions.csv")):
        labels, probs, names, _ = read_predictions(pred)
        made += plot_evaluation(pred.parent, labels, probs, names, compute_all(labels, probs, names))
    for bench in sorted(root.rglob("loading.json")):
        made.append(
            plot_loader_benchmark(json.loads(bench.read_text())["results"], bench.with_suffix(".png"))
        )
    for bench in sorted(root.rglob("throughput.json")):
        made += plot_throughput_benchmark(json.loads(bench.read_text())["results"], bench.parent)
    for prof in sorted(root.rglob("summary.json")):
        data = json.loads(prof.read_text())
        if "kernels_by_launches" in data:
            made += plot_profile(data, prof.parent)
    if not made:
        raise ValueError(
            f"--run_dir={str(run_dir)!r}: found nothing to plot (history.json, eval_*/predictions.csv, loading.json, throughput.json)"
        )
    return made
