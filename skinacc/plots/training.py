"""Training curves: loss and accuracy (train vs validation) and the learning rate, per epoch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt

from skinacc.plots.common import save

__all__ = ["plot_training_curves"]


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
