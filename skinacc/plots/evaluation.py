"""An evaluation's figures: confusion matrices, ROC curves, per-class bars, reliability, image grids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from skinacc.plots.common import _class_fig_size, _wrap, save

__all__ = [
    "EVAL_PLOTS",
    "plot_confusion_matrix",
    "plot_evaluation",
    "plot_image_grid",
    "plot_per_class",
    "plot_reliability",
    "plot_roc_curves",
]

#: The figures of an evaluation folder, by file name.
EVAL_PLOTS = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "roc_curves.png",
    "per_class.png",
    "reliability.png",
)


def plot_confusion_matrix(
    cm: Any, class_names: Sequence[str], path: str | os.PathLike, normalize: bool = False
) -> Path:
    """Confusion matrix with class names; ``normalize`` divides each row by its support (recall)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = len(class_names)
    data = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    size = _class_fig_size(n)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    names = _wrap(class_names, 16)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8 if n <= 15 else 6)
    ax.set_yticks(range(n), names, fontsize=8 if n <= 15 else 6)
    if n <= 20:
        thresh = data.max() / 2 if data.size else 0
        for i in range(n):
            for j in range(n):
                txt = f"{data[i, j]:.2f}" if normalize else f"{int(data[i, j])}"
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] > thresh else "black",
                )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (row-normalised: recall)" if normalize else " (counts)"))
    return save(fig, path)


def plot_roc_curves(
    labels: Any,
    probs: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    aucs: dict[str, Any] | None = None,
) -> Path:
    """One-vs-rest ROC curves: the micro average (bold) and each class."""
    from skinacc.metrics.functional import roc_auc, roc_curve

    y = np.asarray(labels)
    p = np.asarray(probs)
    c = p.shape[1]
    onehot = np.eye(c, dtype=bool)[y]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    cmap = plt.get_cmap("tab20" if c > 10 else "tab10")
    for k in range(c):
        if onehot[:, k].all() or not onehot[:, k].any():
            continue
        fpr, tpr = roc_curve(onehot[:, k], p[:, k])
        ax.plot(
            fpr,
            tpr,
            lw=1,
            color=cmap(k % cmap.N),
            label=f"{class_names[k]} ({roc_auc(onehot[:, k], p[:, k]):.3f})",
        )
    fpr, tpr = roc_curve(onehot.ravel(), p.ravel())
    ax.plot(
        fpr, tpr, lw=2.5, color="black", label=f"micro average ({roc_auc(onehot.ravel(), p.ravel()):.3f})"
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves (one-vs-rest, AUC in brackets)")
    ax.legend(fontsize=7 if c <= 12 else 5, loc="lower right", ncol=1 if c <= 12 else 2)
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_per_class(per_class: dict[str, dict[str, float]], path: str | os.PathLike) -> Path:
    """Per-class precision and recall bars (support in the labels), sorted by recall."""
    names = sorted(per_class, key=lambda n: per_class[n]["recall"])
    n = len(names)
    fig, ax = plt.subplots(figsize=(8, max(3.5, 0.35 * n + 1.5)))
    y = np.arange(n)
    ax.barh(y - 0.2, [per_class[k]["precision"] for k in names], 0.4, label="precision", color="#4C72B0")
    ax.barh(y + 0.2, [per_class[k]["recall"] for k in names], 0.4, label="recall", color="#DD8452")
    ax.set_yticks(y, [f"{k} (n={per_class[k]['support']})" for k in names], fontsize=8 if n <= 20 else 6)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("score")
    ax.set_title("Per-class precision and recall (sorted by recall)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_reliability(bins: dict[str, Any], ece: float, path: str | os.PathLike) -> Path:
    """Reliability diagram: accuracy vs confidence per bin, with the bin counts below."""
    edges = np.asarray(bins["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=float))
    count = np.asarray(bins["count"])
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(6.5, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(centres, acc, width=width * 0.95, color="#4C72B0", edgecolor="black", lw=0.4, label="accuracy")
    ax.plot([0, 1], [0, 1], ls="--", color="#C44E52", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability diagram (ECE = {ece:.3f})")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    axc.bar(centres, count, width=width * 0.95, color="grey")
    axc.set_xlabel("confidence (max probability)")
    axc.set_ylabel("samples")
    axc.set_xlim(0, 1)
    return save(fig, path)


def plot_image_grid(
    rows: Sequence[Sequence[tuple[Any, str]]],
    title: str,
    path: str | os.PathLike,
    columns: int | None = None,
    side: float = 2.0,
) -> Path:
    """Images with captions in a grid: one row per entry of ``rows`` (e.g. a duplicate group), or, with
    ``columns``, all cells wrapped ``columns`` to a row. A cell is ``(image source, caption)``: a path,
    a ``datasets`` image dict, raw bytes or a PIL image; an unreadable one shows its error."""
    from skinacc.data.images import load_rgb

    cells = [c for r in rows for c in r] if columns else None
    if columns:
        rows = [cells[i : i + columns] for i in range(0, len(cells), columns)]
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(side * ncol, side * len(rows) + 0.6), squeeze=False)
    for i, r in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            ax.axis("off")
            if j >= len(r):
                continue
            src, caption = r[j]
            try:
                img = load_rgb(src, 128)
                img.thumbnail((128, 128))
                ax.imshow(img)
            except (OSError, ValueError) as e:
                caption = f"unreadable: {e}"[:40]
            ax.set_title(caption, fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def plot_evaluation(
    out_dir: str | os.PathLike,
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    metrics: dict[str, Any],
) -> list[Path]:
    """Draw an evaluation's figures (:data:`EVAL_PLOTS`) into ``out_dir``; the files written."""
    from skinacc.metrics.functional import reliability_bins

    out = Path(out_dir)
    return [
        plot_confusion_matrix(metrics["confusion_matrix"], class_names, out / EVAL_PLOTS[0]),
        plot_confusion_matrix(metrics["confusion_matrix"], class_names, out / EVAL_PLOTS[1], normalize=True),
        plot_roc_curves(labels, probs, class_names, out / EVAL_PLOTS[2]),
        plot_per_class(metrics["per_class"], out / EVAL_PLOTS[3]),
        plot_reliability(reliability_bins(labels, probs), metrics["ece"], out / EVAL_PLOTS[4]),
    ]
