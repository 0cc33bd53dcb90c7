"""Image-quality flags from cleanvision: blurry, dark, too light, low information, odd size or aspect
ratio, grayscale. cleanvision scores each image and flags outliers relative to the rest of the set."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["QUALITY_ISSUES", "quality_flags"]

logger = logging.getLogger(__name__)

QUALITY_ISSUES = ("blurry", "dark", "light", "low_information", "odd_size", "odd_aspect_ratio", "grayscale")


def quality_flags(paths: list[str], workers: int = 1) -> dict[str, Any]:
    """Flag image-quality issues with cleanvision.

    Args:
        paths: Image files (cleanvision reads files; in-memory images are not supported here).
        workers: Processes cleanvision may use.

    Returns:
        ``{"counts": {issue: n}, "flagged": [{"row", "issues": [...], "scores": {...}}]}`` with rows
        into ``paths``.

    Raises:
        ImportError: cleanvision is not installed (``pip install 'skinacc[audit]'``).
    """
    try:
        from cleanvision import Imagelab
    except ImportError as e:
        raise ImportError("image-quality flags need cleanvision: pip install 'skinacc[audit]'") from e
    lab = Imagelab(filepaths=list(paths))
    lab.find_issues({k: {} for k in QUALITY_ISSUES}, n_jobs=max(1, workers), verbose=False)
    issues = lab.issues.reset_index(drop=True)
    counts = {k: int(issues[f"is_{k}_issue"].sum()) for k in QUALITY_ISSUES}
    flagged = []
    for row in range(len(issues)):
        hit = [k for k in QUALITY_ISSUES if bool(issues.at[row, f"is_{k}_issue"])]
        if hit:
            flagged.append(
                {"row": row, "issues": hit, "scores": {k: float(issues.at[row, f"{k}_score"]) for k in hit}}
            )
    return {"counts": counts, "flagged": flagged}
