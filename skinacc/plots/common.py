"""What every figure shares: the PNG writer, wrapped class names, a bar chart, sizes."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from skinacc.rundir import atomic_write

__all__ = ["DPI", "plot_bars", "save"]


DPI = 110


def save(fig, path: str | os.PathLike) -> Path:
    """Save a figure as PNG, atomically (a failed draw keeps the previous file), and close it."""
    path = Path(path)
    try:
        with atomic_write(path, binary=True) as f:
            fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight")
    finally:
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


def _class_fig_size(n: int) -> float:
    return min(max(6.0, 0.45 * n + 3.0), 22.0)


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
