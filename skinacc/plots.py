"""Every figure skinacc draws, from plain data (lists, dicts, arrays), never from models or loaders.

Figures are matplotlib PNGs meant to be read at a glance: a title, labelled axes, class names that
do not overlap (long names are wrapped, many classes get a taller figure).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "plot_bars",
    "plot_confusion_matrix",
    "plot_image_grid",
    "plot_loader_benchmark",
    "plot_per_class",
    "plot_profile",
    "plot_reliability",
    "plot_roc_curves",
    "plot_run_comparison",
    "plot_scaling",
    "plot_throughput_benchmark",
    "plot_training_curves",
    "save",
]

DPI = 110


def save(fig, path: str | os.PathLike) -> Path:
    """Save a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _wrap(names: Sequence[str], width: int = 18, underscores_as_spaces: bool = False) -> list[str]:
    """Wrap long tick labels; class names stay verbatim unless asked (identifiers such as strategy names)."""
    out = []
    for n in names:
        text = str(n).replace("_", " ") if underscores_as_spaces else str(n)
        out.append(
            "\n".join(
                textwrap.wrap(
                    text, width, break_long_words=True, replace_whitespace=False, drop_whitespace=False
                )
            )
            or text
        )
    return out


def plot_bars(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    ylabel: str,
    path: str | os.PathLike,
    reference: float | None = None,
    reference_label: str | None = None,
    annotate: str = "{:.0f}",
) -> Path:
    """A labelled bar chart (optionally with a horizontal reference line)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4.5))
    bars = ax.bar(range(len(values)), values, color="#4C72B0")
    for b, v in zip(bars, values):
        ax.annotate(
            annotate.format(v),
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(labels)), _wrap(labels, 14, True), rotation=30, ha="right", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="#C44E52", ls="--", lw=1, label=reference_label)
        ax.legend(fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def plot_loader_benchmark(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Images/s per loading strategy, grouped by image set (small / large JPEGs)."""
    sets = list(dict.fromkeys(r["image_set"] for r in results))
    strategies = list(dict.fromkeys(r["strategy"] for r in results))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(strategies) + 2), 4.8))
    width = 0.8 / max(1, len(sets))
    for i, s in enumerate(sets):
        vals = [
            next(
                (
                    r.get("images_per_sec", 0.0)
                    for r in results
                    if r["image_set"] == s and r["strategy"] == st
                ),
                0.0,
            )
            for st in strategies
        ]
        pos = np.arange(len(strategies)) + (i - (len(sets) - 1) / 2) * width
        bars = ax.bar(pos, vals, width, label=s)
        for b, v in zip(bars, vals):
            ax.annotate(
                "n/a" if v == 0 else f"{v:.0f}",
                (b.get_x() + b.get_width() / 2, b.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(strategies)), _wrap(strategies, 14, True), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images / s (decode + transform + normalise)")
    ax.set_title("Data-loading strategies, same files and transforms")
    ax.legend(title="image set", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Loss and accuracy (train vs validation) and the learning rate, per epoch."""
    ep = [r["epoch"] for r in history]  # numbered from 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], "o-", label="train")
        if any(f"val_{key}" in r for r in history):  # a final fit has no validation
            ax.plot(ep, [r.get(f"val_{key}", float("nan")) for r in history], "s-", label="validation")
        best = [r["epoch"] for r in history if r.get("is_best")]
        if best:
            ax.axvline(best[-1], color="grey", ls=":", lw=1, label=f"best (epoch {best[-1]})")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[2].plot(ep, [r["lr"] for r in history], "o-", color="#55A868")
    axes[2].set_yscale("log")
    axes[2].set_title("Learning rate")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("lr")
    axes[2].grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Training curves")
    return save(fig, path)


def _class_fig_size(n: int) -> float:
    return min(max(6.0, 0.45 * n + 3.0), 22.0)


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


def plot_run_comparison(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Comparison figures: accuracy and images/s per run, speed-up and efficiency vs processes,
    and throughput and memory by precision."""
    out = Path(out_dir)
    made = []
    labels = [r["run"] for r in rows]
    made.append(
        plot_bars(
            labels,
            [
                r["test_accuracy"] if r["test_accuracy"] == r["test_accuracy"] else r["best_val_accuracy"]
                for r in rows
            ],
            "Accuracy by run (test, else best validation)",
            "accuracy",
            out / "accuracy.png",
            annotate="{:.3f}",
        )
    )
    made.append(
        plot_bars(
            labels,
            [r["images_per_sec"] for r in rows],
            "Training throughput by run",
            "images / s",
            out / "throughput.png",
            annotate="{:.3g}",
        )
    )
    made += plot_scaling(rows, out)
    groups = sorted({r["precision"] for r in rows})
    if len(groups) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, key, title in (
            (axes[0], "images_per_sec", "Throughput by precision"),
            (axes[1], "peak_mem_mb", "Peak memory by precision"),
        ):
            for n in sorted({r["processes"] for r in rows}):
                vals = [
                    next((r[key] for r in rows if r["precision"] == g and r["processes"] == n), 0.0)
                    for g in groups
                ]
                ax.plot(groups, vals, "o-", label=f"{n} process(es)")
            ax.set_title(title)
            ax.set_ylabel("images / s" if key == "images_per_sec" else "MB")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        made.append(save(fig, out / "precision.png"))
    return made


def plot_scaling(
    rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike, key: str = "images_per_sec"
) -> list[Path]:
    """Speed-up and scaling efficiency vs number of processes, one line per set-up.

    Uses the rows' ``speedup`` and ``scaling_efficiency`` (from ``tracking.compare_records``, which
    defines them only across process counts of equal set-ups); rows without them are left out. A set-up
    is the rows' ``setup`` key where present (runs), else (model, precision, compile).
    """
    out = Path(out_dir)
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not (r.get("speedup") == r.get("speedup") and r.get("speedup") is not None):  # NaN or missing
            continue
        name = f"{r.get('model')} {r.get('precision')}" + (" compiled" if r.get("compile") else "")
        if r.get("differs") not in (None, "-"):
            name += f" {r['differs']}"
        series.setdefault(r.get("setup", "") + name, []).append(r | {"_name": name})
    if not any(len({r["processes"] for r in s}) > 1 for s in series.values()):
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max(r["processes"] for s in series.values() for r in s)
    a1.plot([1, top], [1, top], ls="--", color="grey", lw=1, label="ideal")
    for s in series.values():
        s = sorted(s, key=lambda r: r["processes"])
        n = [r["processes"] for r in s]
        a1.plot(n, [r["speedup"] for r in s], "o-", label=s[0]["_name"][:60])
        a2.plot(n, [r["scaling_efficiency"] for r in s], "o-", label=s[0]["_name"][:60])
    a1.set_title("Speed-up vs processes")
    a1.set_xlabel("processes")
    a1.set_ylabel("speed-up")
    a2.set_title("Scaling efficiency")
    a2.set_xlabel("processes")
    a2.set_ylabel("speed-up / processes")
    a2.set_ylim(0, 1.2)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return [save(fig, out / "scaling.png")]


def _hbar(
    ax, names: Sequence[str], values: Sequence[float], xlabel: str, title: str, fmt: str = "{:.1f}"
) -> None:
    y = np.arange(len(names))[::-1]
    ax.barh(y, values, color="#4C72B0")
    short = [n if len(n) <= 60 else n[:57] + "..." for n in names]
    ax.set_yticks(y, short, fontsize=7)
    for yi, v in zip(y, values):
        ax.annotate(
            fmt.format(v), (v, yi), xytext=(2, 0), textcoords="offset points", va="center", fontsize=6
        )
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)


def plot_profile(summary: dict[str, Any], out_dir: str | os.PathLike, top: int = 15) -> list[Path]:
    """The seed's three profiler figures: operator time breakdown, launch counts, mean kernel duration."""
    out = Path(out_dir)
    dev = summary["device"]
    unit = "kernels" if dev == "cuda" else "operators (CPU: no kernels)"
    made = []
    fig, (a1, a2) = plt.subplots(
        1, 2, figsize=(15, max(4.5, 0.28 * top + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    ops = summary["operators"][:top]
    _hbar(
        a1,
        [o["name"] for o in ops],
        [o["self_ms"] for o in ops],
        f"self time (ms, {dev}) over {summary['steps']} steps",
        "Top operators by self time",
    )
    cats = summary["categories"]
    _hbar(a2, list(cats), list(cats.values()), "time (ms)", "Time by category")
    made.append(save(fig, out / "operator_time.png"))
    fig, ax = plt.subplots(figsize=(10, max(4.5, 0.28 * top + 1.5)))
    ks = summary["kernels_by_launches"][:top]
    _hbar(
        ax,
        [k["name"] for k in ks],
        [k["launches"] for k in ks],
        "launches",
        f"Launch counts, top {unit}",
        "{:.0f}",
    )
    made.append(save(fig, out / "kernel_launches.png"))
    fig, ax = plt.subplots(figsize=(10, max(4.5, 0.28 * top + 1.5)))
    ks = summary["kernels"][:top]
    _hbar(
        ax,
        [k["name"] for k in ks],
        [k["mean_us"] for k in ks],
        "mean duration (µs)",
        f"Average duration, {unit} with the most total time",
    )
    made.append(save(fig, out / "kernel_mean_duration.png"))
    return made


def plot_throughput_benchmark(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Throughput and memory by precision (per mode and batch, single-process variants), and scaling."""
    out = Path(out_dir)
    ok = [r for r in rows if "images_per_sec" in r]
    made: list[Path] = []
    if not ok:
        return made
    n_min = min(r["processes"] for r in ok)
    base = [r for r in ok if r["processes"] == n_min]

    def label(r: dict[str, Any]) -> str:
        extra = (" CL" if r.get("channels_last") else "") + (" compiled" if r.get("compile") else "")
        return f"{r['mode']} bs{r['batch_size']}{extra}"

    groups = list(dict.fromkeys(label(r) for r in base))
    precs = [p for p in ("fp32", "fp16", "bf16") if any(r["precision"] == p for r in base)]
    for key, ylabel, name, title in (
        ("images_per_sec", "images / s", "throughput_by_precision.png", "Throughput by precision"),
        ("peak_mem_mb", "peak memory (MB)", "memory_by_precision.png", "Peak memory by precision"),
    ):
        fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(groups) + 2), 4.8))
        width = 0.8 / max(1, len(precs))
        for i, prec in enumerate(precs):
            vals = [
                next((r[key] for r in base if label(r) == g and r["precision"] == prec), 0.0) for g in groups
            ]
            pos = np.arange(len(groups)) + (i - (len(precs) - 1) / 2) * width
            bars = ax.bar(pos, vals, width, label=prec)
            for b, v in zip(bars, vals):
                ax.annotate(
                    f"{v:.0f}" if v else "n/a",
                    (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        ax.set_xticks(range(len(groups)), _wrap(groups, 16), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({base[0]['model']}, {n_min} process(es), {base[0].get('device', '')})")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        made.append(save(fig, out / name))
    series = [r | {"precision": f"{r['precision']} {label(r)}"} for r in ok if r["mode"].startswith("train")]
    made += plot_scaling(series, out)
    return made


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
