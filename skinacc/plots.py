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

__all__ = ["plot_bars", "plot_loader_benchmark", "save"]

DPI = 110


def save(fig, path: str | os.PathLike) -> Path:
    """Save a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _wrap(names: Sequence[str], width: int = 18) -> list[str]:
    return ["\n".join(textwrap.wrap(str(n).replace("_", " "), width)) or str(n) for n in names]


def plot_bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, path: str | os.PathLike, reference: float | None = None, reference_label: str | None = None, annotate: str = "{:.0f}") -> Path:
    """A labelled bar chart (optionally with a horizontal reference line)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4.5))
    bars = ax.bar(range(len(values)), values, color="#4C72B0")
    for b, v in zip(bars, values):
        ax.annotate(annotate.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), _wrap(labels, 14), rotation=30, ha="right", fontsize=8)
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
        vals = [next((r.get("images_per_sec", 0.0) for r in results if r["image_set"] == s and r["strategy"] == st), 0.0) for st in strategies]
        pos = np.arange(len(strategies)) + (i - (len(sets) - 1) / 2) * width
        bars = ax.bar(pos, vals, width, label=s)
        for b, v in zip(bars, vals):
            ax.annotate("n/a" if v == 0 else f"{v:.0f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(strategies)), _wrap(strategies, 14), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images / s (decode + transform + normalise)")
    ax.set_title("Data-loading strategies, same files and transforms")
    ax.legend(title="image set", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)
