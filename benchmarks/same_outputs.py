"""Are two output folders the same run's files? Field by field, paths and timings aside.

A restructuring that must not change behaviour (issue #34) is checked by running the same configs
before and after it and comparing what they wrote:

    python benchmarks/same_outputs.py outputs/before outputs/after

Compared: every ``.json`` (key by key), ``.csv`` (cell by cell, columns by name), ``.npz`` (array by
array), ``.txt``/``.yaml``/``.md`` (line by line) and ``.safetensors`` (byte for byte) present in either
folder; a file present in only one is reported (figures: only that they exist).
Timings (``seconds``, ``*_per_sec``, ``peak_mem*``, ``time``...), the launch, folder paths and W&B
files are left out. Exits 1 on any difference, listing them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

#: Keys whose values differ between two runs of the same code (wall time, machine state, where).
VOLATILE = re.compile(
    r"seconds|per_sec|peak_mem|minutes|elapsed|created|timestamp|data_wait|step_time|_ms$|^launch$|^time$|_time$|^time_|_at$"
)
#: Files not compared (logs, trackers, locks, checkpoints' RNG states).
SKIP = re.compile(r"(^|/)(wandb|checkpoints|\.skinacc\.lock|[^/]*\.log$|[^/]*\.partial)")


def _same(a, b, where: str, out: list[str], base_a: str, base_b: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if VOLATILE.search(str(k)):
                continue
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'after' if k not in a else 'before'}")
            else:
                _same(a[k], b[k], f"{where}.{k}", out, base_a, base_b)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} vs {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]", out, base_a, base_b)
    elif isinstance(a, str) and isinstance(b, str):
        if a.replace(base_a, "") != b.replace(base_b, ""):
            out.append(f"{where}: {a!r} vs {b!r}")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        pass
    elif a != b:
        out.append(f"{where}: {a!r} vs {b!r}")


def _table(path: Path) -> list[dict[str, str]]:
    """A CSV's rows as dicts (so volatile columns, e.g. an epoch's seconds, are left out by name)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []


def compare(before: Path, after: Path) -> list[str]:
    """Every difference between the two folders' files (empty: the same)."""
    files = {
        p.relative_to(root).as_posix()
        for root in (before, after)
        for p in root.rglob("*")
        if p.is_file() and not SKIP.search(p.relative_to(root).as_posix())
    }
    diffs: list[str] = []
    ba, bb = str(before), str(after)
    for rel in sorted(files):
        a, b = before / rel, after / rel
        if not (a.is_file() and b.is_file()):
            diffs.append(f"{rel}: only in {'before' if a.is_file() else 'after'}")
        elif rel.endswith(".json"):
            _same(json.loads(a.read_text()), json.loads(b.read_text()), rel, diffs, ba, bb)
        elif rel.endswith(".csv"):
            ra, rb = (_table(p) for p in (a, b))
            _same(ra, rb, rel, diffs, ba, bb)
        elif rel.endswith((".txt", ".yaml", ".md")):
            _same(a.read_text().splitlines(), b.read_text().splitlines(), rel, diffs, ba, bb)
        elif rel.endswith(".npz"):
            with np.load(a) as za, np.load(b) as zb:
                for k in sorted(set(za.files) | set(zb.files)):
                    if k not in za.files or k not in zb.files:
                        diffs.append(f"{rel}:{k}: only in {'after' if k not in za.files else 'before'}")
                    elif VOLATILE.search(k):
                        continue
                    elif za[k].dtype.kind == "U":
                        _same([s.replace(ba, "") for s in za[k].tolist()],
                              [s.replace(bb, "") for s in zb[k].tolist()], f"{rel}:{k}", diffs, "", "")  # fmt: skip
                    elif not np.array_equal(za[k], zb[k], equal_nan=True):
                        diffs.append(f"{rel}:{k}: arrays differ")
        elif rel.endswith(".safetensors") and a.read_bytes() != b.read_bytes():
            diffs.append(f"{rel}: weights differ")
    return diffs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    a = p.parse_args()
    diffs = compare(a.before, a.after)
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s) between {a.before} and {a.after}")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
