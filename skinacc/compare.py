"""Runs side by side: a record per run (an output folder, an offline W&B run or an online run path),
which options differ, speed-up and scaling efficiency between process counts of one set-up, and
throughput and memory against fp32. ``skinacc compare-runs`` and the throughput benchmark use it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from skinacc.config import read_run_config
from skinacc.rundir import atomic_write, write_text
from skinacc.wandb_offline import read_offline_run

__all__ = [
    "COLUMNS",
    "compare_records",
    "compare_runs",
    "flat_config",
    "label_differences",
    "paired_comparison",
    "records_markdown",
    "run_record",
    "write_paired",
]

#: The columns of ``comparison.csv`` / ``comparison.md``.
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


def _steady(values: list[float]) -> float:
    """Typical per-epoch figure: the median after the first epoch (which includes warm-up)."""
    vals = [v for v in values if v == v]  # drop NaN
    if len(vals) > 1:
        vals = vals[1:]
    return float(sorted(vals)[len(vals) // 2]) if vals else float("nan")


def run_record(source: str) -> dict[str, Any]:
    """One comparable row from a run: a skinacc output dir, an offline W&B run dir, or ``entity/project/run_id``.

    Raises:
        FileNotFoundError: A local path with neither skinacc outputs nor a W&B run.
    """
    p = Path(source)
    if (p / "history.json").is_file() and (cfg := read_run_config(p)):
        hist = json.loads((p / "history.json").read_text())
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else {}
        launch = cfg.get("launch", {})
        name = cfg.get("run", {}).get("name", p.name)
        model = cfg.get("model", {}).get("model")
        batch = cfg.get("train", {}).get("batch_size")
    elif p.exists():
        off = read_offline_run(p)
        cfg = off["config"]
        hist = [
            {k.removeprefix("epoch/"): v for k, v in row.items()}
            for row in off["history"]
            if "epoch/images_per_sec" in row
        ]
        summary = {k.replace("/", "_"): v for k, v in off["summary"].items()}
        launch, name = cfg.get("launch", {}), off.get("name") or p.name
        model, batch = cfg.get("model", {}).get("model"), cfg.get("train", {}).get("batch_size")
    elif source.count("/") == 2:
        import wandb

        r = wandb.Api().run(source)
        cfg = dict(r.config)
        hist = [
            {k.removeprefix("epoch/"): v for k, v in row.items()}
            for row in r.scan_history()
            if "epoch/images_per_sec" in row
        ]
        summary = {k.replace("/", "_"): v for k, v in dict(r.summary).items()}
        launch, name = cfg.get("launch", {}), r.name
        model, batch = cfg.get("model", {}).get("model"), cfg.get("train", {}).get("batch_size")
    else:
        raise FileNotFoundError(
            f"{source!r}: not a skinacc output dir, an offline W&B run dir, or an entity/project/run_id path"
        )
    prec = launch.get("mixed_precision", "no")
    return {
        "run": p.name if p.exists() else source,  # made unique by compare_runs (paths, not names, differ)
        "name": name,
        "source": source,
        "config": flat_config(cfg),
        "model": model,
        "processes": int(launch.get("num_processes", 1)),
        "precision": "fp32" if prec in ("no", None) else prec,
        "compile": launch.get("dynamo_backend", "no") not in ("no", "none", None),
        "batch_per_process": batch,
        "epochs": len(hist),
        "images_per_sec": _steady([float(r.get("images_per_sec", float("nan"))) for r in hist]),
        "peak_mem_mb": max((float(r.get("peak_mem_mb", 0)) for r in hist), default=float("nan")),
        "data_wait_pct": _steady([float(r.get("data_wait_pct", float("nan"))) for r in hist]),
        "best_val_loss": min((float(r["val_loss"]) for r in hist if "val_loss" in r), default=float("nan")),
        "best_val_accuracy": max(
            (float(r["val_accuracy"]) for r in hist if "val_accuracy" in r), default=float("nan")
        ),
        "test_accuracy": float(summary.get("test_accuracy", float("nan"))),
        "test_balanced_accuracy": float(summary.get("test_balanced_accuracy", float("nan"))),
    }


#: Keys of a run config's ``launch`` and ``resolved`` sections that do not make two runs different
#: set-ups (the options' own knowledge is their ``setup`` metadata, :func:`skinacc.config.is_setup`),
#: or that compare_records compares explicitly (processes, precision, compile).
NOT_SETUP_FACTS = {
    "num_processes",
    "distributed_type",
    "mixed_precision",
    "dynamo_backend",
    "name",
    "group",
    "global_batch_size",
    "data_workers",
    "steps_per_epoch",
    "device_name",
    "torch",
}


def _is_setup(key: str) -> bool:
    from skinacc.config import is_setup

    return key not in NOT_SETUP_FACTS and is_setup(key)


def flat_config(cfg: dict[str, Any]) -> dict[str, str]:
    """A run config ``{section: {option: value}}`` as ``{option: value as text}`` (for comparing runs)."""
    out: dict[str, str] = {}
    for values in cfg.values():
        if isinstance(values, dict):
            for k, v in values.items():
                if not isinstance(v, dict):
                    out.setdefault(k, json.dumps(v, default=str, sort_keys=True))
    return out


def label_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each run row a unique ``run`` label (its path where folder names repeat), a ``differs``
    column naming the options in which it differs from the others, and a ``setup`` key shared by runs
    that differ only in processes, precision, compile and bookkeeping (see :func:`_is_setup`)."""
    names = [r["run"] for r in rows]
    for r in rows:
        if names.count(r["run"]) > 1:
            r["run"] = r["source"]
    configs = [r.get("config", {}) for r in rows]
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if len({c.get(k) for c in configs}) > 1]
    for r, c in zip(rows, configs):
        r["differs"] = " ".join(f"{k}={c.get(k, '-')}" for k in varying if _is_setup(k)) or "-"
        r["setup"] = json.dumps({k: c.get(k) for k in keys if _is_setup(k)}, sort_keys=True)
    return rows


def compare_records(
    rows: list[dict[str, Any]], variant: tuple[str, ...] = ("model", "precision", "compile")
) -> list[dict[str, Any]]:
    """Add speed-up and scaling efficiency vs the fewest-process rows of the same ``variant``, and
    throughput/memory relative to the fp32 row of the same variant and process count.

    Speed-up and efficiency are computed only within a group of equal ``variant`` that was measured at
    two or more process counts (NaN otherwise); the base is the mean of the group's rows at its smallest
    process count, so repeats of one set-up are never mistaken for a scaling point. Rows without
    ``images_per_sec`` (failed measurements) are left as they are. Used by ``recipes/compare_runs.py``
    (runs, grouped by ``setup``; see :func:`label_differences`) and ``recipes/benchmark_throughput.py``
    (benchmark variants, with mode, layout and batch size in ``variant``).
    """

    def nan_div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    measured = [r for r in rows if "images_per_sec" in r]
    for r in measured:
        same = [q for q in measured if all(q.get(k) == r.get(k) for k in variant)]
        counts = sorted({q["processes"] for q in same})
        if len(counts) < 2:
            r["speedup"] = r["scaling_efficiency"] = float("nan")
        else:
            base = [q["images_per_sec"] for q in same if q["processes"] == counts[0]]
            r["speedup"] = nan_div(r["images_per_sec"], sum(base) / len(base))
            r["scaling_efficiency"] = r["speedup"] * counts[0] / r["processes"]
        fp32 = [
            q
            for q in measured
            if q["precision"] == "fp32"
            and q["processes"] == r["processes"]
            and all(q.get(k) == r.get(k) for k in variant if k != "precision")
        ]
        r["throughput_vs_fp32"] = (
            nan_div(r["images_per_sec"], fp32[0]["images_per_sec"]) if fp32 else float("nan")
        )
        r["memory_vs_fp32"] = nan_div(r["peak_mem_mb"], fp32[0]["peak_mem_mb"]) if fp32 else float("nan")
    return rows


def records_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows``."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compare_runs(
    runs: list[str], output_dir: str | os.PathLike
) -> tuple[list[dict[str, Any]], str, list[Path]]:
    """``skinacc compare-runs``: a record per run, what differs, scaling and precision ratios; writes
    ``comparison.csv``, ``comparison.md`` and plots to ``output_dir``.

    Returns:
        The rows, the Markdown table and the plots written.
    """
    from skinacc.plots import plot_run_comparison

    rows = label_differences([run_record(r) for r in runs])
    # Scaling only across process counts of otherwise equal set-ups; precision vs the same set-up's fp32.
    rows = compare_records(rows, ("setup", "precision", "compile"))
    rows.sort(key=lambda r: (str(r["model"]), r["precision"], r["processes"]))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "comparison.csv", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    table = records_markdown(rows, COLUMNS)
    write_text(out / "comparison.md", table)
    return rows, table, plot_run_comparison(rows, out)


def write_paired(rows: list[dict[str, Any]], output_dir: str | os.PathLike) -> tuple[Path, str]:
    """Write :func:`paired_comparison`'s rows as ``paired.csv``; returns its path and a Markdown table."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [
        "run_a",
        "run_b",
        "metric",
        "a",
        "b",
        "difference",
        "ci_low",
        "ci_high",
        "share_above_zero",
        "unit",
    ]
    with atomic_write(out / "paired.csv", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = [
        "| a | b | metric | a | b | a - b [95% CI] | resamples with a > b |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run_a']} | {r['run_b']} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | "
            f"{r['difference']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['share_above_zero']:.2f} |"
        )
    return out / "paired.csv", "\n".join(lines)


def _image_groups(run_dir: Path, paths: list[str]) -> tuple[list[str] | None, str | None]:
    """Group of each image of a run's predictions (its ``--group_column`` in its metadata CSV), or None."""
    from skinacc.config import read_run_config
    from skinacc.data.folder import find_metadata_file, read_metadata

    data = read_run_config(run_dir).get("data", {})
    column = data.get("group_column")
    report = run_dir / "data_report.json"
    root = json.loads(report.read_text()).get("root") if report.is_file() else data.get("data_dir")
    if not column or not root:
        return None, None
    csv_path = data.get("metadata_file") or find_metadata_file(root, Path(root))
    if not csv_path:
        return None, None
    rows = read_metadata(Path(csv_path), Path(root), Path(root))
    return [rows.get(str((Path(root) / p).resolve()), {}).get(column, "") for p in paths], column


def paired_comparison(runs: list[str], split: str, n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """The first run against each other one on the same images of ``split``: per headline metric, the
    difference with a bootstrap CI over whole groups (the same resamples for both models).

    Raises:
        FileNotFoundError: A run without ``eval_<split>/predictions.csv``.
        ValueError: The runs' predictions are not of the same images.
    """
    import numpy as np

    from skinacc.clinical import group_ids, paired_bootstrap, resolve_label_groups
    from skinacc.clinical.report import ClinicalInputs, metric_function
    from skinacc.metrics.report import read_predictions

    def load(run: str):
        path = Path(run) / f"eval_{split}" / "predictions.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"--paired_split={split!r}: {path} not found (evaluate the run on {split} first)"
            )
        return read_predictions(path)

    ya, pa, names, paths = load(runs[0])
    groups, column = _image_groups(Path(runs[0]), paths)
    gid = group_ids(groups, len(paths))
    lg = resolve_label_groups("auto", names)

    def fn(labels, probs):
        x = ClinicalInputs(labels, probs, names, label_groups=lg)
        return metric_function(x)

    out = []
    for other in runs[1:]:
        yb, pb, names_b, paths_b = load(other)
        if sorted(paths_b) != sorted(paths) or names_b != names:
            raise ValueError(
                f"--paired_split={split!r}: {runs[0]} and {other} were not evaluated on the same images and classes"
            )
        order = {p: i for i, p in enumerate(paths_b)}
        idx = np.array([order[p] for p in paths])
        yb, pb = yb[idx], pb[idx]
        diff = paired_bootstrap(fn(ya, pa), fn(yb, pb), gid, n_boot, seed=seed)
        for metric, d in diff.items():
            out.append({"run_a": runs[0], "run_b": other, "metric": metric, "unit": column or "image", **d})
    return out
