"""Out-of-fold predictions: what each cross-validation fold's model predicts for its held-out fold.

A fold run writes ``eval_validation/`` (the usual evaluation files) and ``oof.npz`` (exact
probabilities, every test-time-augmentation view's logits, labels, sample ids, paths and groups), which :mod:`skinacc.run.cv` joins into one
prediction per labelled image outside the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skinacc.data.columns import sample_columns
from skinacc.metrics.report import write_evaluation
from skinacc.plots import plot_evaluation

__all__ = ["OOF_FILE", "read_out_of_fold", "write_out_of_fold"]

OOF_FILE = "oof.npz"


def write_out_of_fold(
    out: Path, val, plan, class_names: list[str], fold: int, model_epoch: int | None
) -> None:
    """The fold model's evaluation of its held-out fold (``val``: an :class:`EvalOutput` at the final TTA
    and temperature) into ``out``: the evaluation files and ``oof.npz``."""
    paths = plan.paths("validation", val.sample_ids)
    extra = {"split": "validation (held-out fold)", "cv_fold": fold, "model_epoch": model_epoch,
             "temperature": val.temperature}  # fmt: skip
    metrics = write_evaluation(out, val.labels, val.probs, class_names, paths, extra)
    plot_evaluation(out, val.labels, val.probs, class_names, metrics)
    table = plan.data.dataset["validation"]
    has_group = "group" in (table.column_names or [])
    groups = sample_columns(table, val.sample_ids, ["group"])["group"] if has_group else [""] * len(paths)
    tmp = out / f".{OOF_FILE}.tmp.npz"
    np.savez(
        tmp, sample_id=val.sample_ids, label=val.labels, probs=val.probs, logits=val.logits.astype(np.float32),
        temperature=val.temperature, path=np.array(paths, dtype=str),
        group=np.array(groups, dtype=str), fold=np.full(len(paths), fold), class_names=np.array(class_names),
    )  # fmt: skip
    tmp.replace(out / OOF_FILE)


def read_out_of_fold(path: str | Path) -> dict[str, Any]:
    """One fold's ``oof.npz`` as a dict of arrays (``class_names`` as a list)."""
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["class_names"] = [str(c) for c in d["class_names"]]
    return d
