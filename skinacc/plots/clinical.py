"""A clinical evaluation's figures: a label group's ROC with its operating point and partial-AUC band,
the risk-coverage curve, and a forest plot of subgroups with their confidence intervals."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from skinacc.plots.common import save

__all__ = ["plot_clinical", "plot_forest", "plot_group_roc", "plot_risk_coverage"]


def plot_group_roc(
    fpr: np.ndarray,
    tpr: np.ndarray,
    name: str,
    auc: dict,
    pauc: dict,
    min_tpr: float,
    points: list[dict[str, Any]],
    path: str | os.PathLike,
) -> Path:
    """ROC of ``name`` vs the rest, the band above ``min_tpr`` shaded, operating points marked."""
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    ax.plot(
        fpr,
        tpr,
        color="#4C72B0",
        lw=1.8,
        label=f"AUC {auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]",
    )
    keep = tpr >= min_tpr
    ax.fill_betweenx(
        np.r_[min_tpr, tpr[keep]],
        np.r_[np.interp(min_tpr, tpr, fpr), fpr[keep]],
        1,
        color="#55A868",
        alpha=0.25,
        label=f"partial AUC above TPR {min_tpr:g}: {pauc['value']:.3f} [{pauc['ci_low']:.3f}, {pauc['ci_high']:.3f}]",
    )
    for p in points:
        x, y = 1 - p["specificity"]["value"], p["sensitivity"]["value"]
        ax.errorbar(
            x,
            y,
            fmt="o",
            color="#C44E52",
            xerr=[[x - (1 - p["specificity"]["ci_high"])], [(1 - p["specificity"]["ci_low"]) - x]],
            yerr=[[y - p["sensitivity"]["ci_low"]], [p["sensitivity"]["ci_high"] - y]],
            label=f"{p['rule']} (threshold {p['threshold']:.3f}, from {p['chosen_on']}): "
            f"sens {y:.2f}, spec {1 - x:.2f}",
        )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{name} vs the rest")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_risk_coverage(
    coverage: np.ndarray,
    risk: np.ndarray,
    aurc: float,
    score: str,
    marks: dict[str, float],
    path: str | os.PathLike,
) -> Path:
    """Error rate among the images kept, as the most uncertain are set aside."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(coverage, risk, color="#4C72B0", lw=1.8, label=f"{score}: AURC {aurc:.4f}")
    for label, c in marks.items():
        ax.axvline(c, color="#C44E52", ls="--", lw=1, label=label)
    ax.set_xlabel("coverage (share of images the model keeps)")
    ax.set_ylabel("risk (error rate among kept images)")
    ax.set_xlim(0, 1)
    ax.set_title("risk-coverage")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_forest(report: dict[str, Any], metric: str, path: str | os.PathLike) -> Path | None:
    """Each subgroup's ``metric`` with its CI, one row per subgroup, the whole set's value as a line."""
    rows = [r for rs in report.get("subgroups", {}).values() for r in rs if metric in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        v = r[metric]
        color = "#C44E52" if r["warning"] else "#4C72B0"
        if np.isfinite(v["value"]):
            lo, hi = v["ci_low"], v["ci_high"]
            xerr = [[v["value"] - lo], [hi - v["value"]]] if np.isfinite(lo) else None
            ax.errorbar(v["value"], yi, xerr=xerr, fmt="s", color=color, capsize=3)
    overall = report.get("headline", {}).get(metric) or next(
        (g[metric.split("/", 1)[1]] for g in report.get("label_groups", {}).values() if "/" in metric), None
    )
    if overall:
        ax.axvline(overall["value"], color="grey", ls="--", lw=1, label="all images")
        ax.legend(fontsize=8)
    ax.set_yticks(y, [f"{r['column']} = {r['subgroup']} (n={r['images']})" for r in rows], fontsize=8)
    ax.set_xlabel(f"{metric} (red: fewer images than the minimum)")
    ax.set_title(
        f"subgroups: {metric}, {report['bootstrap']['level']:.0%} CIs by {report['bootstrap']['unit']}"
    )
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_clinical(
    out_dir: str | os.PathLike,
    report: dict[str, Any],
    labels: np.ndarray,
    probs: np.ndarray,
    label_groups,
    unc: np.ndarray,
) -> list[Path]:
    """Every clinical figure of a report into ``out_dir``: ``roc_<group>.png``, ``risk_coverage.png``,
    ``subgroups_forest.png``."""
    from skinacc.clinical import group_scores, risk_coverage
    from skinacc.metrics import roc_curve

    out = Path(out_dir)
    paths = []
    for g in label_groups:
        info = report["label_groups"][g.name]
        fpr, tpr = roc_curve(np.isin(labels, g.classes), group_scores(probs, g))
        pk = next(k for k in info if k.startswith("pauc_above_tpr_"))
        points = [p for p in report["operating_points"] if p["rule"].split(":")[0] == g.name]
        min_tpr = float(pk.rsplit("_", 1)[1])
        paths.append(
            plot_group_roc(
                fpr, tpr, g.name, info["auc"], info[pk], min_tpr, points, out / f"roc_{g.name}.png"
            )
        )
    s = report["selective"]
    rc = risk_coverage(probs.argmax(1) == labels, unc)
    marks = {f"keep {s['at_coverage']['target']:.0%}": s["at_coverage"]["target"]}
    if "abstention" in s:
        marks[f"abstention ({s['abstention']['chosen_on']})"] = s["abstention"]["coverage"]["value"]
    paths.append(
        plot_risk_coverage(
            rc["coverage"], rc["risk"], rc["aurc"], s["score"], marks, out / "risk_coverage.png"
        )
    )
    forest = plot_forest(report, "balanced_accuracy", out / "subgroups_forest.png")
    if forest:
        paths.append(forest)
    return paths
