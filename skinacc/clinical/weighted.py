"""Metrics of weighted samples, vectorised over many weightings at once.

A bootstrap resample is a weighting of the evaluated images (how often each was drawn), so one function
of ``(weights (B, n), ...)`` gives the point estimate (one row of ones) and B resamples alike, in a few
matrix products instead of B Python loops. With unit weights every function here equals its
scikit-learn counterpart (tests hold them equal).

Conventions: a binary problem has ``y`` True for the positive class (e.g. malignant) and a score that is
higher for it (``P(group)``); a rate whose denominator has no weight is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = [
    "Roc",
    "auc",
    "binary_at_threshold",
    "confusion",
    "expected_calibration_error",
    "from_confusion",
    "partial_auc",
    "rates_at",
    "roc",
]


def _indicator(index: np.ndarray, size: int) -> sparse.csr_matrix:
    """``(n, size)`` 0/1 matrix with a one at ``(i, index[i])``: ``W @ it`` sums weights per index."""
    n = len(index)
    return sparse.csr_matrix((np.ones(n), (np.arange(n), index)), shape=(n, size))


def _sum_by(weights: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """``(B, size)``: each row's weights summed per value of ``index``."""
    return np.asarray((_indicator(index, size).T @ weights.T).T)


def confusion(weights: np.ndarray, labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Weighted confusion matrices ``(B, C, C)``, true classes as rows."""
    c = num_classes
    return _sum_by(weights, labels * c + preds, c * c).reshape(-1, c, c)


def from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro F1 ``(B,)`` and per-class recall ``(B, C)`` of confusion
    matrices ``(B, C, C)``, as scikit-learn defines them: balanced accuracy averages the recall of the
    classes present (support > 0); macro F1 averages over the classes in labels or predictions."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    total = cm.sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        r0 = np.nan_to_num(recall)
        f1 = np.where(precision + r0 > 0, 2 * precision * r0 / (precision + r0), 0.0)
        present = (support + predicted) > 0
        return {
            "accuracy": tp.sum(1) / total,
            "balanced_accuracy": np.nanmean(recall, 1),
            "macro_f1": (f1 * present).sum(1) / present.sum(1),
            "recall": recall,
        }


class Roc:
    """Weighted ROC curves of one binary problem, vectorised over weightings.

    Scores are sorted once; tied scores form one step (a diagonal segment), as scikit-learn's
    ``roc_curve(drop_intermediate=False)`` draws them.

    Args:
        weights: ``(B, n)``.
        y: ``(n,)`` bool, True for positives.
        scores: ``(n,)``, higher for positives.
    """

    def __init__(self, weights: np.ndarray, y: np.ndarray, scores: np.ndarray):
        y = np.asarray(y, dtype=bool)
        distinct, step = np.unique(-np.asarray(scores, dtype=np.float64), return_inverse=True)
        self.thresholds = -distinct  # descending: step k accepts every score >= thresholds[k]
        k = len(distinct)
        pos = _sum_by(weights * y, step, k)
        neg = _sum_by(weights * ~y, step, k)
        self.pos_total, self.neg_total = pos.sum(1), neg.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            # (B, k + 1) with the (0, 0) corner first
            zero = np.zeros((len(weights), 1))
            self.tpr = np.hstack([zero, np.cumsum(pos, 1)]) / self.pos_total[:, None]
            self.fpr = np.hstack([zero, np.cumsum(neg, 1)]) / self.neg_total[:, None]


def roc(weights: np.ndarray, y: np.ndarray, scores: np.ndarray) -> Roc:
    """:class:`Roc` of ``y`` by ``scores`` under each weighting."""
    return Roc(weights, y, scores)


def auc(curve: Roc) -> np.ndarray:
    """Area under each ROC curve ``(B,)`` (ties count one half; NaN without both classes)."""
    return np.trapezoid(curve.tpr, curve.fpr, axis=1)


def partial_auc(curve: Roc, min_tpr: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """The two "area above a sensitivity" figures of the ISIC challenges, ``(B,)`` each.

    Returns:
        ``(pauc, auc_above)``:

        - ``pauc``: ISIC 2024's partial AUC above ``min_tpr``, the area between the curve and the right
          edge over sensitivities in [min_tpr, 1]: ``∫ (1 - FPR) dTPR``, range 0 to ``1 - min_tpr``
          (0.2 for a perfect model at the default). ISIC 2024 computes it as the AUC up to FPR
          ``1 - min_tpr`` of the problem with labels and scores flipped: the same area.
        - ``auc_above``: ISIC 2019's "AUC above sensitivity" (``isic-challenge-scoring``'s
          ``auc_sens_80``), the area under the curve where TPR >= min_tpr: ``∫ TPR dFPR`` from the FPR
          at which the curve reaches min_tpr to 1. It equals ``pauc + min_tpr * (1 - FPR(min_tpr))``.
    """
    t0, t1 = curve.tpr[:, :-1], curve.tpr[:, 1:]
    f0, f1 = curve.fpr[:, :-1], curve.fpr[:, 1:]
    # Each segment's part at TPR >= min_tpr, its start interpolated along the segment.
    start = np.maximum(t0, min_tpr)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(t1 > t0, (start - t0) / (t1 - t0), 0.0)
    fs = f0 + frac * (f1 - f0)
    inside = t1 >= min_tpr
    rise = np.where(inside, t1 - start, 0.0)
    pauc = (rise * (1 - (fs + f1) / 2)).sum(1)
    run = np.where(inside, f1 - fs, 0.0)
    auc_above = (run * (start + t1) / 2).sum(1)
    bad = np.isnan(curve.pos_total / curve.neg_total) | (curve.pos_total == 0) | (curve.neg_total == 0)
    pauc[bad], auc_above[bad] = np.nan, np.nan
    return pauc, auc_above


def rates_at(curve: Roc, target: float, fixed: str) -> tuple[np.ndarray, np.ndarray]:
    """The best operating point of each curve with one rate held to a target ``(B,)`` each.

    Args:
        target: The rate to reach.
        fixed: ``"sensitivity"`` (the highest specificity with sensitivity >= target) or
            ``"specificity"`` (the highest sensitivity with specificity >= target).

    Returns:
        ``(value, threshold)``: the other rate at that point and the score threshold that gives it
        (``score >= threshold`` is positive; ``inf`` where no image need be positive).
    """
    thr = np.concatenate([[np.inf], curve.thresholds])
    if fixed == "sensitivity":
        ok, value = curve.tpr >= target - 1e-12, 1 - curve.fpr
    elif fixed == "specificity":
        ok, value = 1 - curve.fpr >= target - 1e-12, curve.tpr
    else:
        raise ValueError(f"fixed={fixed!r}: expected 'sensitivity' or 'specificity'")
    masked = np.where(ok, np.nan_to_num(value, nan=-1.0), -np.inf)
    best = masked.argmax(1)
    got = np.take_along_axis(value, best[:, None], 1)[:, 0]
    got[~ok.any(1)] = np.nan
    return got, thr[best]


def binary_at_threshold(
    weights: np.ndarray, y: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and the share and number referred (score >= threshold),
    ``(B,)`` each."""
    y = np.asarray(y, dtype=bool)
    refer = np.asarray(scores) >= threshold
    tp, fn = weights @ (y & refer), weights @ (y & ~refer)
    fp, tn = weights @ (~y & refer), weights @ (~y & ~refer)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "referred": tp + fp,
            "referred_share": (tp + fp) / (tp + fn + fp + tn),
        }


def expected_calibration_error(
    weights: np.ndarray, labels: np.ndarray, probs: np.ndarray, n_bins: int = 15
) -> np.ndarray:
    """Weighted ECE ``(B,)`` over equal-width bins of the top probability (as
    :func:`skinacc.metrics.functional.expected_calibration_error`)."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = _sum_by(weights, which, n_bins)
    gap = np.abs(_sum_by(weights * correct, which, n_bins) - _sum_by(weights * conf, which, n_bins))
    return gap.sum(1) / count.sum(1)
