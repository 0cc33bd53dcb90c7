"""What a data source gave: the splits and a report of sizes, classes, conversions and every file that
could not be used (with the reason), and the paths of rows by ``sample_id``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SPLIT_ALIASES", "BadFile", "DataReport", "SkinData", "paths_of"]

logger = logging.getLogger(__name__)


SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class BadFile:
    """A file that was left out, and why."""

    path: str
    reason: str


@dataclass
class DataReport:
    """What loading found: sizes, classes, and every file that could not be used."""

    source: str
    root: str | None = None
    class_names: list[str] = field(default_factory=list)
    num_images: int = 0
    bad_files: list[BadFile] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    converted_modes: dict[str, int] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    predefined_splits: bool = False
    dedupe: dict[str, Any] | None = None  # --dedupe_groups: how many copies were kept with their originals

    def summary(self) -> str:
        """One paragraph for logs."""
        parts = [
            f"{self.num_images} images in {len(self.class_names)} classes from {self.source}"
            + (f" ({self.root})" if self.root else ""),
            "splits "
            + ", ".join(f"{k}={v}" for k, v in self.split_sizes.items())
            + (" (predefined)" if self.predefined_splits else ""),
        ]
        if self.converted_modes:
            parts.append(
                "converted to RGB: " + ", ".join(f"{m}={n}" for m, n in sorted(self.converted_modes.items()))
            )
        if self.empty_classes:
            parts.append(f"empty class folders left out: {self.empty_classes}")
        if self.bad_files:
            parts.append(f"{len(self.bad_files)} unreadable files skipped (see data_report.json)")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_skipped(self, skip_log: str | os.PathLike) -> int:
        """Add the images that failed to decode while the data were read (an ``ImageTransform``
        ``skip_log``) to :attr:`bad_files`, once each. Returns how many were new."""
        path = Path(skip_log)
        if not path.is_file():
            return 0
        known = {b.path for b in self.bad_files}
        new = 0
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash mid-write
                continue
            if rec.get("path") not in known:
                known.add(rec["path"])
                self.bad_files.append(BadFile(rec["path"], f"skipped while reading: {rec.get('reason', '')}"))
                new += 1
        return new

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report (with every bad file and its reason) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path


@dataclass
class SkinData:
    """A loaded dataset and its report.

    Attributes:
        dataset: ``datasets.DatasetDict`` (train / validation / test), or of ``IterableDataset`` streams.
        report: Sizes, classes, conversions, unreadable files.
        streaming: ``dataset`` holds streams of shards (``load_streaming``).
        sizes: Images per split of a stream (a stream has no ``len``).
        label_counts: Class counts per split of a stream, when the shards recorded them.
    """

    dataset: Any
    report: DataReport
    streaming: bool = False
    sizes: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["train"].features["label"].names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def paths_of(split, sample_ids) -> list[str]:
    """Image paths of ``sample_ids`` (e.g. gathered predictions, in any order) within a split."""
    row_of = {sid: i for i, sid in enumerate(split["sample_id"])}
    paths = split["path"]
    return [paths[row_of[int(s)]] for s in sample_ids]
