"""One evaluated set of images as one record: what every report is made from.

A :class:`Predictions` holds the labels and probabilities of a model's predictions, with what the
analyses need beside them: the share of test-time-augmentation views that disagree (from the
:class:`~skinacc.predictor.Predictor`), the images' ids and paths, the group each belongs to (a lesion or
patient: the bootstrap's unit) and the metadata columns the subgroups slice by. Training's final test,
``evaluate``, a cross-validation fold's held-out predictions and the out-of-fold set are each made into
one, and :func:`skinacc.evaluation.report.report` writes any of them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.data.columns import sample_columns

__all__ = ["Predictions", "read_predictions_npz"]

#: Stored metadata columns in a predictions file are keyed ``meta:<column>``.
_META = "meta:"


@dataclass
class Predictions:
    """A model's predictions of a set of images, gathered over processes (each image once).

    Attributes:
        class_names: The model's classes, in the probabilities' column order.
        labels: True class ids ``(n,)``, in the model's columns.
        probs: Probabilities ``(n, C)`` (averaged over views at the model's temperature), float64.
        sample_ids: Each image's ``sample_id`` in its data table ``(n,)``.
        paths: Each image's path (or name), for the predictions table; None: row numbers.
        disagreement: Share of test-time-augmentation views whose top class differs from the averaged
            prediction's ``(n,)``; None with one view.
        groups: Group per image (``""`` for none), or None without a group column.
        group_by: What the groups are (``--group_column``; ``"duplicate group"`` for the audit's).
        metadata: Column name -> value per image, for the subgroup analyses.
    """

    class_names: list[str]
    labels: np.ndarray
    probs: np.ndarray
    sample_ids: np.ndarray
    paths: list[str] | None = None
    disagreement: np.ndarray | None = None
    groups: np.ndarray | None = None
    group_by: str | None = None
    metadata: dict[str, Sequence] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_table(
        cls,
        table,
        *,
        class_names: list[str],
        labels: np.ndarray,
        probs: np.ndarray,
        sample_ids: np.ndarray,
        paths: list[str] | None,
        disagreement: np.ndarray | None = None,
        group_column: str | None = None,
        columns: Sequence[str] = (),
        streaming: bool = False,
        metadata_file: str | None = None,
        root: str | None = None,
    ) -> Predictions:
        """Predictions of rows of ``table`` (an evaluated split), with their ``group`` column when the
        table has one and the metadata ``columns`` (:func:`skinacc.data.columns.sample_columns`).

        Args:
            group_column: The data's ``--group_column`` (what the ``group`` column holds); without one,
                a ``group`` column holds the audit's duplicate groups.
            metadata_file, root: An image folder's metadata CSV and folder, for ``columns``.

        Raises:
            ValueError: A metadata column neither the table nor the metadata CSV has.
        """
        has_group = "group" in (table.column_names or [])
        try:
            meta = sample_columns(
                table,
                sample_ids,
                (["group"] if has_group else []) + list(columns),
                streaming=streaming,
                metadata_file=metadata_file,
                root=root,
            )
        except ValueError as e:
            raise ValueError(f"--subgroup_columns: {e}") from None
        groups = np.array(meta.pop("group"), dtype=str) if has_group else None
        return cls(
            class_names,
            labels,
            probs,
            sample_ids,
            paths,
            disagreement,
            groups,
            (group_column or "duplicate group") if has_group else None,
            {c: meta[c] for c in columns},
        )

    def save_npz(self, path: str | Path, **arrays: Any) -> None:
        """Write the record (and ``arrays`` beside it, e.g. logits) to ``path`` atomically.

        Metadata are stored as text (a missing value as ``""``, which the subgroups count as missing).
        """
        path = Path(path)
        n = len(self)
        meta = {
            f"{_META}{k}": np.array(["" if v is None else str(v) for v in vals], dtype=str)
            for k, vals in self.metadata.items()
        }
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(
            tmp, sample_id=self.sample_ids, label=self.labels, probs=self.probs,
            path=np.array(self.paths if self.paths is not None else [str(i) for i in range(n)], dtype=str),
            group=self.groups if self.groups is not None else np.array([""] * n, dtype=str),
            class_names=np.array(self.class_names), **arrays, **meta,
        )  # fmt: skip
        tmp.replace(path)


def read_predictions_npz(path: str | Path) -> dict[str, Any]:
    """A file :meth:`Predictions.save_npz` wrote, as a dict of arrays (``class_names`` as a list, the
    metadata columns under ``metadata``)."""
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["class_names"] = [str(c) for c in d["class_names"]]
    d["metadata"] = {k[len(_META) :]: d.pop(k) for k in list(d) if k.startswith(_META)}
    return d
