"""Classification metrics for skin-lesion models, from labels and class probabilities.

Accuracy hides collapsed rare classes; these metrics show them: balanced accuracy, macro F1, per-class
precision/recall/F1, one-vs-rest ROC AUC (micro, macro, per class), the confusion matrix and the
expected calibration error. Everything scikit-learn computes comes from ``sklearn.metrics`` itself, so
the numbers are scikit-learn's by construction (undefined precision/recall count as 0, top-k ties are
broken as scikit-learn breaks them). One deliberate difference: with a class absent from the labels
(an external test folder that lacks a class), scikit-learn's ``roc_auc_score(multi_class="ovr")``
raises (or, given ``labels``, returns NaN); skinacc reports that class's AUC as NaN and averages the
macro AUC over the classes present.
The expected calibration error and the reliability bins are skinacc's own (scikit-learn has neither).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

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
    return skm.confusion_matrix(labels, preds, labels=np.arange(num_classes))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(skm.accuracy_score(labels, probs.argmax(1)))


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` highest probabilities (scikit-learn's)."""
    c = probs.shape[1]
    if k >= c:
        return 1.0
    scores = probs[:, 1] if c == 2 else probs  # scikit-learn takes the positive column for 2 classes
    return float(skm.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(c)))


def per_class_report(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    pred_n = cm.sum(0).astype(np.float64)
    support = cm.sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the labels (scikit-learn's ``balanced_accuracy_score``)."""
    rep = per_class_report(cm)
    present = rep["support"] > 0
    return float(rep["recall"][present].mean())


def f1_scores(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """``(macro F1, support-weighted F1)`` over classes present in labels or predictions (scikit-learn's)."""
    kw = {"zero_division": 0}
    return (
        float(skm.f1_score(labels, preds, average="macro", **kw)),
        float(skm.f1_score(labels, preds, average="weighted", **kw)),
    )


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC (scikit-learn's); NaN if only one class is present."""
    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(skm.roc_auc_score(y, scores))


def roc_auc_ovr(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """One-vs-rest ROC AUC: per class, macro (mean of the defined ones) and micro (pooled one-hot).

    With every class present this is scikit-learn's ``roc_auc_score(multi_class="ovr")``; a class
    absent from the labels gets NaN and is left out of the macro mean (scikit-learn raises or gives NaN).
    """
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
    """False- and true-positive rates at every distinct threshold, from (0, 0) (scikit-learn's)."""
    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():  # scikit-learn warns and returns NaN rates; draw the diagonal instead
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    fpr, tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
    return fpr, tpr


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
    macro_f1, weighted_f1 = f1_scores(y, preds)
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
