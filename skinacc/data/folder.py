"""Local image folders: the Kaggle layout (``<root>/<Class>/*.jpg``, also nested, class names as
spelled), with or without predefined split folders; every file checked once (cached), a metadata CSV
beside the folder for groups."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from skinacc.config import DataArguments
from skinacc.data.images import IMAGE_EXTENSIONS, check_image
from skinacc.data.loaders import default_num_workers
from skinacc.data.report import SPLIT_ALIASES, BadFile, DataReport
from skinacc.stopping import worker_shield

__all__ = ["read_image_folder", "scan_image_folder", "verify_files"]

logger = logging.getLogger(__name__)


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "__MACOSX"))


def _find_root(root: Path, known_classes: frozenset[str] = frozenset()) -> Path:
    """Descend through wrapper folders (e.g. ``balanced_dataset/balanced_dataset/``); a lone folder
    named like a known class is a class folder, not a wrapper."""
    cur = root
    for _ in range(8):
        entries = [e for e in cur.iterdir() if _visible(e)]
        dirs = [e for e in entries if e.is_dir()]
        images = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_EXTENSIONS]
        if (
            len(dirs) == 1
            and not images
            and dirs[0].name.lower() not in SPLIT_ALIASES
            and dirs[0].name not in known_classes
        ):
            cur = dirs[0]
        else:
            break
    return cur


def scan_image_folder(
    root: str | os.PathLike, known_classes: Sequence[str] = ()
) -> tuple[dict[str, dict[str, list[Path]]], list[BadFile], Path]:
    """List the images of an image folder, by split and class.

    Args:
        root: ``<root>/<Class>/*`` or ``<root>/{train,val,test}/<Class>/*`` (wrapper folders allowed).
        known_classes: Class names expected (e.g. a model's); a lone sub-folder so named is read as
            a class, not descended into as a wrapper.

    Returns:
        ``({split: {class: [files]}}, skipped, resolved_root)``: split is ``"all"`` without predefined
        splits; ``skipped`` lists files without an image extension.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
        ValueError: No class folders or no image files were found.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} is not a directory")
    base = _find_root(root, frozenset(known_classes))
    subdirs = sorted(d for d in base.iterdir() if d.is_dir() and _visible(d))
    if not subdirs:
        raise ValueError(
            f"data folder {str(base)!r} has no class sub-folders; expected <root>/<Class>/*.jpg "
            "or <root>/train/<Class>/*.jpg"
        )
    names = {d.name.lower() for d in subdirs}
    predefined = names <= set(SPLIT_ALIASES) and "train" in {SPLIT_ALIASES[n] for n in names}
    layout = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs} if predefined else {"all": base}
    skipped: list[BadFile] = []
    out: dict[str, dict[str, list[Path]]] = {}
    for split, sdir in layout.items():
        out[split] = {}
        for cdir in sorted(d for d in sdir.iterdir() if d.is_dir() and _visible(d)):
            files: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(cdir):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    p = Path(dirpath) / fn
                    if p.suffix.lower() in IMAGE_EXTENSIONS:
                        files.append(p)
                    else:
                        skipped.append(BadFile(str(p), f"not an image file extension ({p.suffix or 'none'})"))
            out[split][cdir.name] = files
    if not any(files for split in out.values() for files in split.values()):
        raise ValueError(
            f"data folder {str(base)!r} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return out, skipped, base


def _check_one(args: tuple[str, str]) -> tuple[bool, str, str]:
    path, level = args
    return check_image(path, level)


def verify_files(
    paths: list[str], level: str, cache_dir: str | os.PathLike, workers: int
) -> list[tuple[bool, str, str]]:
    """Check many image files, in parallel, reusing results cached by (path, size, mtime).

    Returns:
        ``(ok, reason, mode)`` per path, in order.
    """
    if level == "none":
        return [(True, "", "") for _ in paths]
    cache_file = (
        Path(cache_dir).expanduser()
        / "verify"
        / f"{level}-{hashlib.sha1(str(Path(paths[0]).parent.parent).encode()).hexdigest()[:16]}.json"
    )
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    results: list[tuple[bool, str, str] | None] = []
    todo: list[int] = []
    keys: list[str] = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
            key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        except OSError as e:
            results.append((False, f"cannot read: {e}", ""))
            keys.append("")
            continue
        keys.append(key)
        hit = cache.get(key)
        results.append(tuple(hit) if hit else None)
        if hit is None:
            todo.append(i)
    if todo:
        jobs = [(paths[i], level) for i in todo]
        if workers > 1 and len(jobs) > 256:
            with ProcessPoolExecutor(max_workers=workers, initializer=worker_shield()) as ex:
                found = list(ex.map(_check_one, jobs, chunksize=64))
        else:
            found = [_check_one(j) for j in jobs]
        for i, r in zip(todo, found):
            results[i] = r
            cache[keys[i]] = list(r)
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError as e:  # a read-only cache only costs time
            logger.warning("could not write the image-verification cache %s: %s", cache_file, e)
    return results  # type: ignore[return-value]


def find_metadata_file(root: str | Path, base: Path) -> str | None:
    """The metadata CSV beside an image folder when none is named: ``labels.csv`` or ``metadata.csv``
    in the folder given or in the class folders' parent."""
    for cand in ("labels.csv", "metadata.csv"):
        for parent in (Path(root).expanduser(), base):
            if (parent / cand).is_file():
                return str(parent / cand)
    return None


def read_metadata(path: Path, base: Path, root: Path) -> dict[str, dict[str, str]]:
    """Map absolute image path -> metadata row, from a CSV with a ``path`` column."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ValueError(
                f"--metadata_file={str(path)!r}: needs a 'path' column, found {reader.fieldnames}"
            )
        rows = {}
        for row in reader:
            rel = row["path"]
            for parent in (root, base, path.parent):
                p = (parent / rel).resolve()
                if p.exists():
                    break
            rows[str(p)] = row
        return rows


def read_image_folder(
    args: DataArguments, root: str, known_classes: Sequence[str] = ()
) -> tuple[dict[str, dict[str, list]], DataReport, list[str]]:
    """Read a checked image folder into column lists per split.

    Args:
        args: Data options (group column, metadata CSV, workers, cache).
        root: The folder (wrapper folders are descended).
        known_classes: Classes of the model the data is for (a lone class folder is then a class).

    Returns:
        ``(columns by split, report, class names)``; ``load_skin_dataset`` splits and wraps them.
    """
    layout, skipped, base = scan_image_folder(root, known_classes)
    report = DataReport(source="imagefolder", root=str(base), predefined_splits="all" not in layout)
    class_names = sorted({c for split in layout.values() for c in split})
    counts = Counter()
    for split in layout.values():
        for c, files in split.items():
            counts[c] += len(files)
    report.empty_classes = [c for c in class_names if counts[c] == 0]
    for c in report.empty_classes:
        logger.warning("class folder %r holds no images: left out of the class list", c)
    class_names = [c for c in class_names if counts[c] > 0]
    need = 1 if known_classes else 2  # evaluating a known model: one class is a valid test set
    if len(class_names) < need:
        raise ValueError(
            f"data folder {str(base)!r}: found {len(class_names)} non-empty class folder(s); need at least {need}"
        )
    cid = {c: i for i, c in enumerate(class_names)}

    meta: dict[str, dict[str, str]] = {}
    meta_file = args.metadata_file
    if meta_file is None and args.group_column:
        meta_file = find_metadata_file(root, base)
        if meta_file is None:
            raise ValueError(
                f"--group_column={args.group_column!r} needs --metadata_file (a CSV with 'path' and "
                f"{args.group_column!r} columns); none found as labels.csv or metadata.csv in {root!r}"
            )
    if meta_file:
        meta = read_metadata(Path(meta_file).expanduser(), base, Path(root).expanduser())

    all_paths = [str(p) for split in layout.values() for c in class_names for p in split.get(c, [])]
    checks = verify_files(
        all_paths, args.verify_images, args.cache_dir, default_num_workers(args.num_workers) or 1
    )
    status = dict(zip(all_paths, checks))
    report.bad_files = list(skipped)
    modes: Counter = Counter()
    columns: dict[str, dict[str, list]] = {}
    for split, classes in layout.items():
        col: dict[str, list] = {"image": [], "label": [], "path": []}
        if args.group_column:
            col["group"] = []
        for c in class_names:
            for p in classes.get(c, []):
                sp = str(p)
                ok, reason, mode = status[sp]
                if not ok:
                    report.bad_files.append(BadFile(sp, reason))
                    continue
                if mode and mode != "RGB":
                    modes[mode] += 1
                col["image"].append(sp)
                col["label"].append(cid[c])
                col["path"].append(os.path.relpath(sp, base))
                if args.group_column:
                    row = meta.get(str(p.resolve()))
                    if row is None or args.group_column not in row:
                        raise ValueError(
                            f"--metadata_file={meta_file!r}: no {args.group_column!r} value for image {sp!r}"
                        )
                    col["group"].append(row[args.group_column])
        columns[split] = col
    report.converted_modes = dict(modes)
    real_bad = [b for b in report.bad_files if not b.reason.startswith("not an image file extension")]
    if real_bad:
        logger.warning(
            "%d unreadable image(s) skipped, e.g. %s: %s", len(real_bad), real_bad[0].path, real_bad[0].reason
        )
    return columns, report, class_names
