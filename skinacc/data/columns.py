"""Per-image values of any column (the split group, metadata such as sex, age or body site) for the
images an evaluation gathered, by ``sample_id``: what the clinical evaluation resamples and slices by.

A column of the data table (a Hub dataset's own columns, ``group``) is read from it, for map-style and
streamed splits alike; any other column of an image folder comes from its metadata CSV
(``--metadata_file``, or ``labels.csv``/``metadata.csv`` beside the class folders), joined on the
image's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skinacc.data.folder import find_metadata_file, read_metadata
from skinacc.data.streaming import _sample_id

__all__ = ["sample_columns"]


def _from_table(table, sample_ids, names: list[str], streaming: bool) -> dict[str, list]:
    want = [int(s) for s in sample_ids]
    if not streaming:
        row_of = {int(sid): i for i, sid in enumerate(table["sample_id"])}
        return {n: [table[n][row_of[s]] for s in want] for n in names} if names else {}
    keep = ["sample_id", *names] if "sample_id" in (table.column_names or []) else ["image", *names]
    found: dict[int, dict[str, Any]] = {}
    wanted = set(want)
    for row in table.select_columns(keep):
        sid = _sample_id(row)
        if sid in wanted:
            found[sid] = row
    return {n: [found.get(s, {}).get(n) for s in want] for n in names}


def sample_columns(
    table,
    sample_ids: Sequence[int],
    names: Sequence[str],
    *,
    streaming: bool = False,
    metadata_file: str | None = None,
    root: str | None = None,
) -> dict[str, list]:
    """Values of ``names`` for each of ``sample_ids``.

    Args:
        table: The evaluated split (``datasets`` Dataset or IterableDataset).
        sample_ids: The gathered predictions' ids, in their order.
        names: Columns wanted.
        streaming: ``table`` is streamed (read once, only the columns wanted).
        metadata_file: An image folder's metadata CSV (``--metadata_file``); found beside ``root`` when None.
        root: The image folder (the data report's ``root``) whose relative ``path`` values the CSV matches.

    Raises:
        ValueError: A column neither the table nor the metadata CSV has, naming the columns there are.
    """
    names = list(dict.fromkeys(names))
    in_table = [n for n in names if n in (table.column_names or [])]
    out = _from_table(table, sample_ids, in_table, streaming)
    rest = [n for n in names if n not in in_table]
    if not rest:
        return out
    csv_path = metadata_file or (find_metadata_file(root, Path(root)) if root else None)
    rows: dict[str, dict[str, str]] = {}
    if csv_path:
        base = Path(root) if root else Path(csv_path).parent
        rows = read_metadata(Path(csv_path).expanduser(), base, base)
    have = sorted({k for r in rows.values() for k in r} | set(table.column_names or []))
    missing = [n for n in rest if not any(n in r for r in rows.values())]
    if missing:
        where = f"metadata file {csv_path!r}" if csv_path else "the data (no metadata CSV found)"
        raise ValueError(f"column(s) {missing} not in {where}; columns: {have}")
    paths = _from_table(table, sample_ids, ["path"], streaming)["path"]
    base = Path(root or ".")
    for n in rest:
        out[n] = [rows.get(str((base / p).resolve()), {}).get(n) if p else None for p in paths]
    return out
