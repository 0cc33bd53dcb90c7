"""Selective prediction: when the model should say "I don't know".

An uncertainty score per image (higher: less sure), a risk-coverage curve (the error rate among the
images the model keeps, as it keeps fewer), its area, and the threshold that keeps a target share.

Scores (``--abstain_score``):

- ``max_prob``: 1 - the top class probability (softmax response; Geifman & El-Yaniv 2017);
- ``entropy``: the entropy of the probabilities, divided by log(classes) (0 to 1);
- ``tta_disagreement``: the share of test-time-augmentation views whose top class differs from the
  averaged prediction (needs ``--tta flip`` or ``dihedral``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ABSTAIN_SCORES", "coverage_threshold", "risk_coverage", "uncertainty", "view_disagreement"]

ABSTAIN_SCORES = ("max_prob", "entropy", "tta_disagreement")


def view_disagreement(view_probs: np.ndarray) -> np.ndarray:
    """Share of test-time-augmentation views ``(n, V, C)`` whose top class differs from the top class of
    their average ``(n,)`` (0 with one view)."""
    mean = view_probs.mean(1)
    return (view_probs.argmax(2) != mean.argmax(1)[:, None]).mean(1)


def uncertainty(
    probs: np.ndarray, score: str = "max_prob", disagreement: np.ndarray | None = None
) -> np.ndarray:
    """Uncertainty per image ``(n,)``, higher for less sure predictions.

    Args:
        probs: ``(n, C)`` probabilities (averaged over views).
        score: One of :data:`ABSTAIN_SCORES`.
        disagreement: :func:`view_disagreement` per image (``tta_disagreement`` only), None without
            test-time augmentation.
    """
    if score == "max_prob":
        return 1.0 - probs.max(1)
    if score == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(1) / np.log(max(2, probs.shape[1]))
    if score == "tta_disagreement":
        if disagreement is None:
            raise ValueError(
                "--abstain_score=tta_disagreement needs test-time augmentation (--tta flip or dihedral): "
                "with one view there is nothing to disagree"
            )
        return np.asarray(disagreement, dtype=np.float64)
    raise ValueError(f"--abstain_score={score!r}: expected one of {', '.join(ABSTAIN_SCORES)}")


def coverage_threshold(unc: np.ndarray, coverage: float) -> float:
    """The uncertainty threshold that keeps at least ``coverage`` of these images (keep: ``unc <=
    threshold``): as few more as ties allow, the threshold set midway to the next value."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage={coverage}: must be in (0, 1]")
    s = np.sort(np.asarray(unc, dtype=np.float64))
    k = int(np.ceil(coverage * len(s) - 1e-9))
    t = s[max(k, 1) - 1]
    # Midway to the next higher value: the same images are kept, and one exactly at the threshold does
    # not flip when its uncertainty is recomputed with float rounding.
    higher = s[s > t]
    return float((t + higher[0]) / 2) if len(higher) else float(t + 1e-6)


def risk_coverage(correct: np.ndarray, unc: np.ndarray) -> dict[str, np.ndarray | float]:
    """Risk (error rate among kept images) at every coverage, most certain images kept first.

    Returns:
        ``coverage`` and ``risk`` (n,), and ``aurc``: their mean, the area under the risk-coverage curve
        (lower is better; an oracle that abstains on exactly the errors reaches its minimum).
    """
    order = np.argsort(unc, kind="stable")
    errors = 1.0 - np.asarray(correct, dtype=np.float64)[order]
    k = np.arange(1, len(errors) + 1)
    risk = np.cumsum(errors) / k
    return {"coverage": k / len(errors), "risk": risk, "aurc": float(risk.mean())}
