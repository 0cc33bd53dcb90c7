"""Classification metrics for skin-lesion models, from labels and class probabilities (pure NumPy).

Accuracy hides collapsed rare classes; these metrics show them: balanced accuracy, macro F1, per-class
precision/recall/F1, one-vs-rest ROC AUC (micro, macro, per class), the confusion matrix and the
expected calibration error. Conventions match scikit-learn (tested against it): averages over classes
follow its defaults, an undefined precision/recall counts as 0, and a per-class AUC is NaN when the
class has no positives or no negatives in the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "check_inputs",
    "compute_all",
    "confusion_matrix",
    "expected_calibration_error",
    "f1_scores",
    "per_class_report",
    "reliability_bins",
    "roc_auc",
    "roc_auc_ovr",
    "roc_curve",
    "top_k_accuracy",
]


def check_inputs(labels: Any, probs: Any, atol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``labels`` (n,) and ``probs`` (n, C).

    Raises:
        ValueError: Shapes disagree, labels are out of range, values are NaN/inf or negative, or a row
            of probabilities does not sum to 1 (within ``atol``; pass softmax outputs, not logits).
    """
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (samples, classes), got shape {p.shape}")
    if y.ndim != 1 or len(y) != len(p):
        raise ValueError(
            f"labels must be 1-D with one entry per row of probabilities: {y.shape} vs {p.shape}"
        )
    if len(y) == 0:
        raise ValueError("no samples")
    if not np.issubdtype(y.dtype, np.integer):
        if np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels must be integer class ids, got {y.dtype}")
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).any(1).sum())
        raise ValueError(f"probabilities contain NaN or inf in {bad} row(s)")
    if (p < 0).any():
        raise ValueError("probabilities must be >= 0")
    sums = p.sum(1)
    off = np.abs(sums - 1) > atol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probabilities must sum to 1 per row (row {i} sums to {sums[i]:.4f}; {int(off.sum())} rows off): apply softmax to logits first"
        )
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1] - 1}], found {y.min()}..{y.max()}")
    return y.astype(np.int64), p


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows, predicted classes as columns."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` highest probabilities (ties: lower index first)."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((order == labels[:, None]).any(1).mean())


def _present(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    return np.union1d(np.unique(labels), np.unique(preds))


def per_class_report(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    pred_n = cm.sum(0).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the labels."""
    rep = per_class_report(cm)
    present = rep["support"] > 0
    return float(rep["recall"][present].mean())


def f1_scores(cm: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """``(macro F1, support-weighted F1)`` over classes present in labels or predictions."""
    rep = per_class_report(cm)
    idx = _present(labels, preds)
    macro = float(rep["f1"][idx].mean())
    support = rep["support"][idx]
    weighted = float((rep["f1"][idx] * support).sum() / support.sum()) if support.sum() else 0.0
    return macro, weighted


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC (Mann-Whitney U with tie correction); NaN if only one class is present."""
    y = np.asarray(y_true, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_ovr(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """One-vs-rest ROC AUC: per class, macro (mean of the defined ones) and micro (pooled one-hot)."""
    c = probs.shape[1]
    onehot = np.eye(c, dtype=bool)[labels]
    per = np.array([roc_auc(onehot[:, k], probs[:, k]) for k in range(c)])
    defined = per[~np.isnan(per)]
    return {
        "per_class": per,
        "macro": float(defined.mean()) if len(defined) else float("nan"),
        "micro": roc_auc(onehot.ravel(), probs.ravel()),
    }


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (starting at (0, 0))."""
    y = np.asarray(y_true, dtype=bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    s, y = np.asarray(scores)[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.array([], dtype=int)
    idx = np.concatenate([distinct, [len(s) - 1]])
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.concatenate([[0.0], fps / n]), np.concatenate([[0.0], tps / p])


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Confidence (max probability) histogram: per equal-width bin, mean confidence, accuracy, count."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi]; a confidence of exactly 0 cannot occur for a max over >= 1 class.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count.astype(np.int64)}


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE: count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    b = reliability_bins(labels, probs, n_bins)
    mask = b["count"] > 0
    return float(
        (np.abs(b["accuracy"][mask] - b["confidence"][mask]) * b["count"][mask]).sum() / b["count"].sum()
    )


def compute_all(
    labels: Any,
    probs: Any,
    class_names: Sequence[str] | None = None,
    top_k: Sequence[int] = (3, 5),
    n_bins: int = 15,
) -> dict[str, Any]:
    """Every metric, as plain Python values (JSON-ready).

    Args:
        labels: True class ids, shape (n,).
        probs: Class probabilities, shape (n, C), rows summing to 1.
        class_names: Names for the per-class entries (default ``"0"``, ``"1"``, ...).
        top_k: k values for top-k accuracy (only those below C are reported).
        n_bins: Bins of the calibration error.

    Returns:
        Scalars (``accuracy``, ``balanced_accuracy``, ``top_k_accuracy@k``, ``macro_f1``, ``weighted_f1``,
        ``roc_auc_micro``, ``roc_auc_macro``, ``ece``, ``num_samples``), ``per_class`` (precision, recall,
        f1, support, roc_auc per class name) and ``confusion_matrix`` (list of lists).
    """
    y, p = check_inputs(labels, probs)
    c = p.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} probability columns")
    preds = p.argmax(1)
    cm = confusion_matrix(y, preds, c)
    rep = per_class_report(cm)
    auc = roc_auc_ovr(y, p)
    macro_f1, weighted_f1 = f1_scores(cm, y, preds)
    out: dict[str, Any] = {
        "num_samples": len(y),
        "accuracy": accuracy(y, p),
        "balanced_accuracy": balanced_accuracy(cm),
    }
    for k in top_k:
        if k < c:
            out[f"top_{k}_accuracy"] = top_k_accuracy(y, p, k)
    out |= {
        "macro_f1": macro_f1,
        "weighted_f1": weighted_f1,
        "roc_auc_micro": auc["micro"],
        "roc_auc_macro": auc["macro"],
        "ece": expected_calibration_error(y, p, n_bins),
        "per_class": {
            n: {
                "precision": float(rep["precision"][i]),
                "recall": float(rep["recall"][i]),
                "f1": float(rep["f1"][i]),
                "support": int(rep["support"][i]),
                "roc_auc": float(auc["per_class"][i]),
            }
            for i, n in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
    }
    return out
