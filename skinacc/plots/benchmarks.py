"""Benchmark and comparison figures: loading strategies, runs side by side, scaling, profiles, throughput."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from skinacc.plots.common import _hbar, _wrap, plot_bars, save

__all__ = [
    "plot_loader_benchmark",
    "plot_profile",
    "plot_run_comparison",
    "plot_scaling",
    "plot_throughput_benchmark",
]


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
