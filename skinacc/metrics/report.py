"""Write an evaluation to disk: metrics.json, per_class.csv, predictions.csv and every plot.

Used by ``recipes/evaluate.py``, by the training recipe's final test evaluation, and by
``recipes/plots.py`` (which recomputes from ``predictions.csv``, so plots can be redrawn without the model).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.metrics.functional import compute_all
from skinacc.rundir import atomic_write, write_json

__all__ = [
    "HEADLINE",
    "format_metrics_table",
    "read_predictions",
    "scalar_metrics",
    "write_evaluation",
]


#: The headline metrics: what training logs and selects on every epoch, a cross-validation reports per
#: fold and the clinical evaluation gives CIs for.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece")


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The single-number metrics (for trackers and tables)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def write_evaluation(
    out_dir: str | os.PathLike,
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute every metric and write the evaluation files (the figures of them:
    :func:`skinacc.plots.evaluation.plot_evaluation`).

    Args:
        out_dir: Destination folder.
        labels: True class ids (n,).
        probs: Probabilities (n, C).
        class_names: Class names in column order.
        paths: Image path per sample, for ``predictions.csv``.
        extra: Entries added to ``metrics.json`` (model, split, TTA ...).

    Returns:
        The metrics (as in ``metrics.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_all(labels, probs, class_names)
    write_json(out / "metrics.json", {**(extra or {}), **metrics, "class_names": list(class_names)})
    with atomic_write(out / "per_class.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "precision", "recall", "f1", "support", "roc_auc"])
        for name, r in metrics["per_class"].items():
            w.writerow(
                [
                    name,
                    f"{r['precision']:.6f}",
                    f"{r['recall']:.6f}",
                    f"{r['f1']:.6f}",
                    r["support"],
                    f"{r['roc_auc']:.6f}",
                ]
            )
    preds = probs.argmax(1)
    with atomic_write(out / "predictions.csv", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "correct", *[f"prob:{n}" for n in class_names]])
        for i in range(len(labels)):
            w.writerow(
                [
                    paths[i] if paths is not None else i,
                    class_names[labels[i]],
                    class_names[preds[i]],
                    int(labels[i] == preds[i]),
                    *[f"{v:.6g}" for v in probs[i]],
                ]
            )
    return metrics


def read_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read ``predictions.csv`` back: ``(labels, probs, class_names, paths)``."""
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    names = [h.removeprefix("prob:") for h in header[4:]]
    idx = {n: i for i, n in enumerate(names)}
    labels = np.array([idx[r[1]] for r in rows[1:]], dtype=np.int64)
    probs = np.array([[float(v) for v in r[4:]] for r in rows[1:]], dtype=np.float64)
    probs /= probs.sum(1, keepdims=True)  # undo the rounding of the CSV
    return labels, probs, names, [r[0] for r in rows[1:]]


def format_metrics_table(metrics: dict[str, Any], title: str = "evaluation") -> str:
    """A readable plain-text summary: headline metrics, then one row per class."""
    lines = [f"== {title}: {metrics['num_samples']} images =="]
    for k, v in scalar_metrics(metrics).items():
        if k != "num_samples":
            lines.append(f"  {k:<20s} {v:.4f}")
    width = max(12, *(len(n) for n in metrics["per_class"]))
    lines.append(f"  {'class':<{width}s}  precision  recall     f1  support  roc_auc")
    for name, r in metrics["per_class"].items():
        lines.append(
            f"  {name:<{width}s}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}  {r['roc_auc']:7.3f}"
        )
    return "\n".join(lines)
