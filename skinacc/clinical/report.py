"""The clinical evaluation of one set of predictions: every figure with a lesion-resampled 95% CI.

:func:`clinical_evaluation` takes labels, probabilities, the group (lesion/patient) of each image, the
decision rules frozen on validation and the metadata columns, and returns ``clinical.json``'s content;
:func:`write_clinical` writes it with ``subgroups.csv``; :func:`clinical_summary` is its console text.
``skinacc evaluate`` and a training run's final test both call these on predictions gathered once.
"""

from __future__ import annotations

import csv
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.clinical.bootstrap import Interval, bootstrap, group_ids
from skinacc.clinical.decision import DecisionRules
from skinacc.clinical.groups import LabelGroup, group_scores
from skinacc.clinical.selective import coverage_threshold, risk_coverage, uncertainty
from skinacc.clinical.subgroups import assign_subgroups, parse_subgroup_spec
from skinacc.clinical.weighted import (
    auc,
    binary_at_threshold,
    confusion,
    expected_calibration_error,
    from_confusion,
    partial_auc,
    rates_at,
    roc,
)
from skinacc.metrics.report import HEADLINE
from skinacc.rundir import atomic_write, write_json

__all__ = [
    "SENSITIVITY_TARGETS",
    "SPECIFICITY_TARGETS",
    "ClinicalInputs",
    "clinical_evaluation",
    "clinical_summary",
    "metric_function",
    "write_clinical",
]

#: Specificity is reported at these sensitivities, and sensitivity at these specificities, per group.
SENSITIVITY_TARGETS = (0.9, 0.95)
SPECIFICITY_TARGETS = (0.8, 0.9)


@dataclass
class ClinicalInputs:
    """Predictions of one split and what to ask of them.

    Attributes:
        labels: True class ids ``(n,)`` (model columns).
        probs: Probabilities ``(n, C)``.
        class_names: The model's classes.
        groups: Group name per image (lesion or patient: the bootstrap's unit), or None (images).
        group_by: What the groups are (``--group_column``), for the report.
        label_groups: The label groups asked about (:func:`skinacc.clinical.groups.resolve_label_groups`).
        rules: Thresholds frozen on validation, applied here.
        metadata: Column name -> value per image (for ``subgroup_columns``).
        disagreement: Share of TTA views disagreeing per image (``tta_disagreement`` abstention).
    """

    labels: np.ndarray
    probs: np.ndarray
    class_names: list[str]
    groups: Sequence | None = None
    group_by: str | None = None
    label_groups: list[LabelGroup] = field(default_factory=list)
    rules: DecisionRules = field(default_factory=DecisionRules)
    metadata: dict[str, Sequence] = field(default_factory=dict)
    disagreement: np.ndarray | None = None


def metric_function(
    x: ClinicalInputs,
    keep: np.ndarray | None = None,
    unc: np.ndarray | None = None,
    coverage_thr: dict[str, float] | None = None,
    pauc_tpr: float = 0.8,
    full: bool = True,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The metrics of ``x`` as a function of weightings ``(B, n_kept) -> {name: (B,) or (B, C)}``: what
    :func:`skinacc.clinical.bootstrap.bootstrap` resamples.

    Args:
        x: The predictions and what to ask of them (label groups, the rules' operating points).
        keep: The images to score (a subgroup; default all).
        unc: Uncertainty per image, for ``coverage_thr``.
        coverage_thr: ``{name: uncertainty threshold}``: coverage and accuracy of the images kept.
        pauc_tpr: Sensitivity above which the partial AUCs are measured.
        full: Everything (else the cheaper subgroup set: accuracy, balanced accuracy, macro F1, the
            groups' AUC and the operating points).
    """
    keep = np.ones(len(x.labels), bool) if keep is None else keep
    unc = np.zeros(len(x.labels)) if unc is None else unc
    coverage_thr = coverage_thr or {}
    y, p = x.labels[keep], x.probs[keep]
    c = p.shape[1]
    pred = p.argmax(1)
    correct = pred == y
    onehot = np.eye(c, dtype=bool)[y]
    scores = {g.name: group_scores(p, g) for g in x.label_groups}
    is_pos = {g.name: np.isin(y, g.classes) for g in x.label_groups}
    # A stored operating point names its classes: it applies whatever --label_groups says now.
    op_inputs = []
    for op in x.rules.operating_points:
        cols = [x.class_names.index(c) for c in op.classes]
        op_inputs.append((np.isin(y, cols), p[:, cols].sum(1)))
    u = unc[keep]

    def fn(w: np.ndarray) -> dict[str, np.ndarray]:
        m = from_confusion(confusion(w, y, pred, c))
        out = {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}
        if full:
            out["recall"] = m["recall"]
            with warnings.catch_warnings():  # a class absent from a resample has no AUC
                warnings.simplefilter("ignore", RuntimeWarning)
                per = np.stack([auc(roc(w, onehot[:, k], p[:, k])) for k in range(c)], 1)
                out["roc_auc_macro"] = np.nanmean(per, 1)
            out["ece"] = expected_calibration_error(w, y, p)
        for g in x.label_groups:
            curve = roc(w, is_pos[g.name], scores[g.name])
            out[f"{g.name}/auc"] = auc(curve)
            if full:
                out[f"{g.name}/pauc"], out[f"{g.name}/auc_above_sens"] = partial_auc(curve, pauc_tpr)
                for t in SENSITIVITY_TARGETS:
                    out[f"{g.name}/specificity_at_sensitivity_{t:g}"] = rates_at(curve, t, "sensitivity")[0]
                for t in SPECIFICITY_TARGETS:
                    out[f"{g.name}/sensitivity_at_specificity_{t:g}"] = rates_at(curve, t, "specificity")[0]
        for op, (op_pos, op_score) in zip(x.rules.operating_points, op_inputs):
            for k, v in binary_at_threshold(w, op_pos, op_score, op.threshold).items():
                out[f"op:{op.label}/{k}"] = v
        total = w.sum(1)
        for name, t in coverage_thr.items():
            kept = u <= t
            with np.errstate(all="ignore"):
                out[f"{name}/coverage"] = (w @ kept) / total
                out[f"{name}/accuracy"] = (w @ (kept & correct)) / (w @ kept)
        return out

    return fn


def clinical_evaluation(
    x: ClinicalInputs,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    pauc_min_tpr: float = 0.8,
    abstain_score: str = "max_prob",
    report_coverage: float = 0.9,
    subgroup_columns: Sequence[str] = (),
    min_subgroup_size: int = 30,
) -> dict[str, Any]:
    """Every clinical figure of ``x`` with percentile bootstrap CIs over whole groups.

    Returns:
        ``clinical.json``'s content: ``bootstrap`` (resamples, level, unit, time), ``headline``,
        ``per_class_recall``, ``label_groups``, ``operating_points``, ``selective``, ``subgroups``.
    """
    t0 = time.perf_counter()
    n = len(x.labels)
    gid = group_ids(x.groups, n)
    unc = uncertainty(x.probs, abstain_score, x.disagreement)
    thr = {f"coverage_{report_coverage:g}": coverage_threshold(unc, report_coverage)}
    if x.rules.abstention is not None:
        if x.rules.abstention.score != abstain_score:  # one uncertainty score per report
            raise ValueError(
                f"--abstain_score={abstain_score!r}, but the model's stored abstention uses "
                f"{x.rules.abstention.score!r}: evaluate with the model's score"
            )
        thr["abstention"] = x.rules.abstention.threshold
    every = np.ones(n, bool)
    ci = bootstrap(metric_function(x, every, unc, thr, pauc_min_tpr, full=True), gid, n_boot, level, seed)
    seconds = time.perf_counter() - t0

    def d(k: str) -> dict[str, float]:
        v = ci[k]
        assert isinstance(v, Interval)
        return v.as_dict()

    out: dict[str, Any] = {
        "bootstrap": {
            "resamples": n_boot,
            "level": level,
            "seed": seed,
            "unit": x.group_by or "image",
            "units": int(gid.max()) + 1 if n else 0,
            "images": n,
            "seconds": round(seconds, 3),
        },
        "headline": {k: d(k) for k in HEADLINE},
        "per_class_recall": {
            name: iv.as_dict() | {"support": int((x.labels == i).sum())}
            for i, (name, iv) in enumerate(zip(x.class_names, ci["recall"]))  # type: ignore[arg-type]
        },
        "label_groups": {},
        "operating_points": [],
    }
    for g in x.label_groups:
        pos = np.isin(x.labels, g.classes)
        out["label_groups"][g.name] = {
            "classes": g.members(x.class_names),
            "positives": int(pos.sum()),
            "negatives": int((~pos).sum()),
            "auc": d(f"{g.name}/auc"),
            f"pauc_above_tpr_{pauc_min_tpr:g}": d(f"{g.name}/pauc"),
            f"auc_above_sensitivity_{pauc_min_tpr:g}": d(f"{g.name}/auc_above_sens"),
            **{
                f"specificity_at_sensitivity_{t:g}": d(f"{g.name}/specificity_at_sensitivity_{t:g}")
                for t in SENSITIVITY_TARGETS
            },
            **{
                f"sensitivity_at_specificity_{t:g}": d(f"{g.name}/sensitivity_at_specificity_{t:g}")
                for t in SPECIFICITY_TARGETS
            },
        }
    for op in x.rules.operating_points:
        figs = {
            k: d(f"op:{op.label}/{k}")
            for k in ("sensitivity", "specificity", "ppv", "npv", "referred", "referred_share")
        }
        got = figs[op.target]["value"]
        out["operating_points"].append(
            {
                "rule": op.label,
                "classes": op.classes,
                "threshold": op.threshold,
                "chosen_on": op.chosen_on,
                "chosen": op.chosen,
                **figs,
                f"{op.target}_minus_target": got - op.target_value,
            }
        )
    rc = risk_coverage(x.probs.argmax(1) == x.labels, unc)
    cov = f"coverage_{report_coverage:g}"
    kept = unc <= thr[cov]
    sel: dict[str, Any] = {
        "score": abstain_score,
        "aurc": rc["aurc"],
        "at_coverage": {
            "target": report_coverage,
            "threshold": thr[cov],
            "coverage": d(f"{cov}/coverage"),
            "accuracy": d(f"{cov}/accuracy"),
            "balanced_accuracy": _balanced(x.labels[kept], x.probs[kept].argmax(1), x.probs.shape[1]),
        },
    }
    if "abstention" in thr:
        a = x.rules.abstention
        sel["abstention"] = {
            "threshold": thr["abstention"],
            "target_coverage": a.target_coverage,  # type: ignore[union-attr]
            "chosen_on": a.chosen_on,
            "coverage": d("abstention/coverage"),  # type: ignore[union-attr]
            "accuracy_kept": d("abstention/accuracy"),
        }
    out["selective"] = sel
    out["subgroups"] = _subgroups(
        x, unc, gid, subgroup_columns, min_subgroup_size, n_boot, level, seed, pauc_min_tpr
    )
    return out


def _balanced(y: np.ndarray, pred: np.ndarray, c: int) -> float:
    return (
        float(from_confusion(confusion(np.ones((1, len(y))), y, pred, c))["balanced_accuracy"][0])
        if len(y)
        else float("nan")
    )


def _subgroups(x: ClinicalInputs, unc, gid, columns, min_n, n_boot, level, seed, pauc_tpr) -> dict[str, list]:
    out: dict[str, list] = {}
    first = x.label_groups[:1]
    for spec_text in columns:
        spec = parse_subgroup_spec(spec_text)
        if spec.column not in x.metadata:
            raise ValueError(
                f"--subgroup_columns: no column {spec.column!r} in the evaluated data's metadata; "
                f"columns: {sorted(x.metadata)}"
            )
        names, order = assign_subgroups(spec, x.metadata[spec.column])
        rows = []
        for sub in order:
            keep = names == sub
            sub_x = ClinicalInputs(
                x.labels,
                x.probs,
                x.class_names,
                label_groups=first,
                rules=DecisionRules(x.rules.operating_points[:1]),
            )
            fn = metric_function(sub_x, keep, unc, {}, pauc_tpr, full=False)
            ci = bootstrap(fn, np.unique(gid[keep], return_inverse=True)[1], n_boot, level, seed)
            pos = np.isin(x.labels[keep], first[0].classes) if first else None
            row: dict[str, Any] = {
                "column": spec.column,
                "subgroup": sub,
                "images": int(keep.sum()),
                "units": int(len(np.unique(gid[keep]))),
                "classes_present": int(len(np.unique(x.labels[keep]))),
                **({f"{first[0].name}_positives": int(pos.sum())} if first else {}),
                "warning": f"fewer than {min_n} images: figures are unreliable" if keep.sum() < min_n else "",
            }
            for k, v in ci.items():
                if isinstance(v, Interval):
                    row[k] = v.as_dict()
            rows.append(row)
        out[str(spec)] = rows
    return out


def write_clinical(out_dir: str | Path, report: dict[str, Any]) -> list[Path]:
    """``clinical.json`` and, with subgroups, ``subgroups.csv`` (one row per subgroup and metric)."""
    out = Path(out_dir)
    written = [write_json(out / "clinical.json", report)]
    if report.get("subgroups"):
        path = out / "subgroups.csv"
        with atomic_write(path, newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["column", "subgroup", "images", "units", "metric", "value", "ci_low", "ci_high", "warning"]
            )
            for rows in report["subgroups"].values():
                for r in rows:
                    for k, v in r.items():
                        if isinstance(v, dict):
                            w.writerow(
                                [
                                    r["column"],
                                    r["subgroup"],
                                    r["images"],
                                    r["units"],
                                    k,
                                    f"{v['value']:.6f}",
                                    f"{v['ci_low']:.6f}",
                                    f"{v['ci_high']:.6f}",
                                    r["warning"],
                                ]
                            )
        written.append(path)
    return written


def _iv(v: dict[str, float], pct: bool = False) -> str:
    f = (lambda z: f"{100 * z:.1f}%") if pct else (lambda z: f"{z:.3f}")
    return f"{f(v['value'])} [{f(v['ci_low'])}, {f(v['ci_high'])}]"


def clinical_summary(report: dict[str, Any]) -> str:
    """Console text of :func:`clinical_evaluation`'s report."""
    b = report["bootstrap"]
    units = f"{b['images']} images" + (f" of {b['units']} {b['unit']} groups" if b["unit"] != "image" else "")
    whole = "images" if b["unit"] == "image" else f"whole {b['unit']} groups"
    lines = [
        f"== clinical evaluation: {units}; {b['level']:.0%} CIs from {b['resamples']} resamples of "
        f"{whole} ({b['seconds']:.1f} s) =="
    ]
    for k, v in report["headline"].items():
        lines.append(f"  {k:<28s} {_iv(v)}")
    for name, g in report["label_groups"].items():
        lines.append(
            f"  {name} vs rest ({', '.join(g['classes'])}; {g['positives']} of {g['positives'] + g['negatives']}):"
        )
        for k, v in g.items():
            if isinstance(v, dict):
                lines.append(f"    {k:<32s} {_iv(v)}")
    for op in report["operating_points"]:
        lines.append(
            f"  operating point {op['rule']} (threshold {op['threshold']:.4f}, chosen on {op['chosen_on']}):"
        )
        for k in ("sensitivity", "specificity", "ppv", "npv", "referred_share"):
            lines.append(f"    {k:<32s} {_iv(op[k])}")
        lines.append(f"    {'referred (images)':<32s} {op['referred']['value']:.0f}")
    s = report["selective"]
    a = s["at_coverage"]
    lines.append(
        f"  selective ({s['score']}): AURC {s['aurc']:.4f}; keeping {a['target']:.0%}: accuracy {_iv(a['accuracy'])}, "
        f"balanced accuracy {a['balanced_accuracy']:.3f}"
    )
    if "abstention" in s:
        ab = s["abstention"]
        lines.append(
            f"  abstention chosen on {ab['chosen_on']} for {ab['target_coverage']:.0%}: kept {_iv(ab['coverage'], True)}, "
            f"accuracy kept {_iv(ab['accuracy_kept'])}"
        )
    for col, rows in report["subgroups"].items():
        lines.append(f"  by {col}:")
        for r in rows:
            warn = f"  ! {r['warning']}" if r["warning"] else ""
            lines.append(
                f"    {r['subgroup']:<20s} n={r['images']:<5d} balanced accuracy {_iv(r['balanced_accuracy'])}{warn}"
            )
    return "\n".join(lines)
