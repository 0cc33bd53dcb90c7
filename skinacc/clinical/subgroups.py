"""Subgroups of the evaluated images by metadata: sex, age band, body site, clinic, camera ...

``--subgroup_columns sex anatom_site age:40,60`` names columns of the metadata CSV (or of the dataset).
A numeric column is cut into bands: at the edges given after a colon (``age:40,60`` gives ``<40``,
``40-60``, ``>=60``), else at its tertiles. Images without a value form a ``missing`` subgroup: where
metadata coverage follows the source (as in the shared ISIC set), "missing" is itself a subgroup that
differs in class mix, and hiding it would hide that.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["MISSING", "SubgroupSpec", "assign_subgroups", "parse_subgroup_spec"]

MISSING = "missing"

_SPEC = re.compile(r"^([^:]+?)(?::([-0-9.,\s]+))?$")


class SubgroupSpec:
    """One ``--subgroup_columns`` entry: a column and, for numbers, band edges (None: tertiles)."""

    def __init__(self, column: str, edges: list[float] | None = None):
        self.column, self.edges = column, edges

    def __repr__(self) -> str:
        return f"{self.column}:{','.join(f'{e:g}' for e in self.edges)}" if self.edges else self.column


def parse_subgroup_spec(spec: str) -> SubgroupSpec:
    """``"age:40,60"`` -> column ``age`` cut at 40 and 60; ``"sex"`` -> column ``sex``.

    Raises:
        ValueError: A malformed entry, naming the flag and the form expected.
    """
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"--subgroup_columns={spec!r}: expected <column> or <column>:<edge>,<edge>,...")
    edges = None
    if m.group(2):
        try:
            edges = sorted(float(e) for e in m.group(2).split(",") if e.strip())
        except ValueError:
            raise ValueError(
                f"--subgroup_columns={spec!r}: band edges must be numbers, e.g. age:40,60"
            ) from None
    return SubgroupSpec(m.group(1).strip(), edges)


def _numeric(values: Sequence) -> np.ndarray | None:
    """The values as floats (NaN where missing), or None if any present value is not a number."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            return None
    return out if (~np.isnan(out)).any() else None


def _band_names(edges: list[float]) -> list[str]:
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}", *[f"{a}-{b}" for a, b in itertools.pairwise(e)], f">={e[-1]}"]


def assign_subgroups(spec: SubgroupSpec, values: Sequence) -> tuple[np.ndarray, list[str]]:
    """Subgroup name per image, and the subgroups in display order (bands ascending, then ``missing``).

    Raises:
        ValueError: Band edges given for a column that is not numeric.
    """
    nums = _numeric(values)
    if nums is None:
        if spec.edges:
            raise ValueError(
                f"--subgroup_columns={spec!r}: band edges given, but {spec.column!r} is not numeric"
            )
        names = np.array(
            [
                MISSING
                if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""
                else str(v)
                for v in values
            ],
            dtype=object,
        )
        order = sorted(set(names) - {MISSING}) + ([MISSING] if MISSING in set(names) else [])
        return names, order
    present = nums[~np.isnan(nums)]
    edges = spec.edges or sorted(set(np.round(np.quantile(present, [1 / 3, 2 / 3]), 6).tolist()))
    bands = _band_names(edges)
    which = np.searchsorted(np.asarray(edges), nums, side="right")  # x < e0 -> 0; e0 <= x < e1 -> 1 ...
    names = np.array([MISSING if np.isnan(x) else bands[k] for x, k in zip(nums, which)], dtype=object)
    used = set(names)
    return names, [b for b in bands if b in used] + ([MISSING] if MISSING in used else [])
