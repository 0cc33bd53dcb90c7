"""Out-of-fold predictions: what each cross-validation fold's model predicts for its held-out fold.

A fold run writes ``eval_validation/`` (the usual evaluation files, :func:`skinacc.evaluation.report`)
and ``oof.npz`` (the :class:`~skinacc.evaluation.Predictions` record with every
test-time-augmentation view's logits, the temperature and the fold), which :mod:`skinacc.run.cv` joins
into one prediction per labelled image outside the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skinacc.evaluation import EvalOutput, Predictions, read_predictions_npz, report

__all__ = ["OOF_FILE", "read_out_of_fold", "write_out_of_fold"]

OOF_FILE = "oof.npz"


def write_out_of_fold(
    out: Path, pred: Predictions, output: EvalOutput, fold: int, model_epoch: int | None
) -> None:
    """The fold model's evaluation of its held-out fold into ``out``: the evaluation files and
    ``oof.npz``.

    Args:
        pred: The held-out fold's predictions (at the final TTA and temperature).
        output: The same evaluation's outputs (every view's logits, the temperature).
    """
    extra = {"split": "validation (held-out fold)", "cv_fold": fold, "model_epoch": model_epoch,
             "temperature": output.temperature}  # fmt: skip
    report(pred, out, extra=extra)
    pred.save_npz(
        out / OOF_FILE,
        logits=output.logits.astype(np.float32),
        temperature=output.temperature,
        fold=np.full(len(pred), fold),
    )


def read_out_of_fold(path: str | Path) -> dict[str, Any]:
    """One fold's ``oof.npz`` as a dict of arrays (``class_names`` as a list)."""
    return read_predictions_npz(path)
