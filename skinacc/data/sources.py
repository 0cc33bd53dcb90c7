"""Data sources -> one ``DatasetDict`` with ``train``, ``validation`` and ``test``.

Three sources share one path: a local image folder (the Kaggle layout of the Massive Skin Disease
Balanced Dataset, optionally with predefined split folders), a Hugging Face dataset (Hub id or a
``save_to_disk`` folder), and the embedded synthetic default. Every image is checked once (cached);
unreadable files are skipped and listed in a :class:`DataReport` with the reason, never silently.

Columns of every split: ``image`` (``datasets.Image``), ``label`` (``ClassLabel`` carrying the class
names), ``sample_id`` (stable row id, used to key augmentation randomness), ``path`` and, when a
group column was given, ``group``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.config import DataArguments
from skinacc.data.images import IMAGE_EXTENSIONS, check_image
from skinacc.data.loaders import default_num_workers
from skinacc.data.splits import split_indices, stratified_split
from skinacc.data.synthetic import SyntheticSpec, generate_synthetic_dataset
from skinacc.stopping import worker_shield

__all__ = ["BadFile", "DataReport", "SkinData", "load_skin_dataset", "paths_of", "scan_image_folder"]

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
    """A loaded dataset and its report."""

    dataset: Any  # datasets.DatasetDict
    report: DataReport

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


# ----------------------------------------------------------------------------------------------------
# Image folders


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


def _read_metadata(path: Path, base: Path, root: Path) -> dict[str, dict[str, str]]:
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


def _load_folder(
    args: DataArguments, root: str, known_classes: Sequence[str] = ()
) -> tuple[dict[str, dict[str, list]], DataReport, list[str]]:
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
        for cand in ("labels.csv", "metadata.csv"):
            for parent in (Path(root).expanduser(), base):
                if (parent / cand).is_file():
                    meta_file = str(parent / cand)
                    break
            if meta_file:
                break
        if meta_file is None:
            raise ValueError(
                f"--group_column={args.group_column!r} needs --metadata_file (a CSV with 'path' and "
                f"{args.group_column!r} columns); none found as labels.csv or metadata.csv in {root!r}"
            )
    if meta_file:
        meta = _read_metadata(Path(meta_file).expanduser(), base, Path(root).expanduser())

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


# ----------------------------------------------------------------------------------------------------
# Hugging Face datasets


def _load_hf(args: DataArguments):
    import datasets

    name = args.dataset_name
    assert name is not None
    local = Path(name).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
            ds = datasets.load_from_disk(str(local))
        elif local.is_dir():
            # datasets caches a loaded folder under its name: a folder rewritten in place (e.g. shards
            # prepared again) would come back from the old cache. Key the cache on the files themselves.
            ds = datasets.load_dataset(
                str(local), args.dataset_config, cache_dir=_folder_cache(local, args.cache_dir)
            )
        else:
            ds = datasets.load_dataset(name, args.dataset_config)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--dataset_name={name!r}: not found on disk or on the Hub ({e})") from e
    except Exception as e:  # network, auth, or format errors: name the flag, keep the cause
        raise RuntimeError(f"--dataset_name={name!r}: could not load ({type(e).__name__}: {e})") from e
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    return ds


def _folder_cache(folder: Path, cache_dir: str) -> str:
    """A ``datasets`` cache folder keyed on the names, sizes and modification times of ``folder``'s files."""
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return str(Path(cache_dir).expanduser() / "datasets" / h.hexdigest()[:16])


def _check_batch(batch: dict[str, list], column: str, level: str) -> dict[str, list]:
    res = [check_image(im, level) for im in batch[column]]
    return {"ok": [r[0] for r in res], "reason": [r[1] for r in res], "mode": [r[2] for r in res]}


def _normalise_hf(args: DataArguments, ds) -> tuple[Any, DataReport, list[str]]:
    import datasets

    report = DataReport(source=f"hf:{args.dataset_name}")
    splits = {}
    for split_name, split in ds.items():
        canon = SPLIT_ALIASES.get(split_name.lower())
        if canon is None:
            logger.warning("dataset split %r ignored (not train/validation/test)", split_name)
            continue
        missing = [c for c in (args.image_column, args.label_column) if c not in split.column_names]
        if args.group_column and args.group_column not in split.column_names:
            missing.append(args.group_column)
        if missing:
            raise ValueError(
                f"--dataset_name={args.dataset_name!r} split {split_name!r}: no column(s) {missing}; "
                f"columns are {split.column_names} (set --image_column/--label_column/--group_column)"
            )
        splits[canon] = split
    if "train" not in splits:
        raise ValueError(f"--dataset_name={args.dataset_name!r}: has no train split (splits: {list(ds)})")
    report.predefined_splits = len(splits) > 1
    feat = splits["train"].features[args.label_column]
    if isinstance(feat, datasets.ClassLabel):
        class_names = list(feat.names)
    else:
        values = sorted({v for s in splits.values() for v in s.unique(args.label_column)}, key=str)
        class_names = [str(v) for v in values]
    cid = {c: i for i, c in enumerate(class_names)}

    out = {}
    bad: list[BadFile] = []
    for canon, split in splits.items():
        keep = [args.image_column, args.label_column] + ([args.group_column] if args.group_column else [])
        split = split.select_columns(keep).cast_column(args.image_column, datasets.Image(decode=False))
        if not isinstance(split.features[args.label_column], datasets.ClassLabel):
            labels = [cid[str(v)] for v in split[args.label_column]]
        else:
            labels = split[args.label_column]
        images = split[args.image_column]
        paths = [(im.get("path") or f"{canon}[{i}]") for i, im in enumerate(images)]
        if args.verify_images != "none":
            # A map over the split: parallel, and cached by datasets next to the Hub download.
            flags = split.map(
                _check_batch,
                batched=True,
                batch_size=64,
                fn_kwargs={"column": args.image_column, "level": args.verify_images},
                remove_columns=split.column_names,
                num_proc=default_num_workers(args.num_workers) or 1 if len(split) > 1024 else None,
                desc=f"verify {canon} images",
            )
            checks = list(zip(flags["ok"], flags["reason"], flags["mode"]))
        else:
            checks = [(True, "", "")] * len(images)
        col: dict[str, list] = {"image": [], "label": [], "path": []}
        if args.group_column:
            col["group"] = []
            groups = [str(g) for g in split[args.group_column]]
        for i, (ok, reason, _) in enumerate(checks):
            if not ok:
                bad.append(BadFile(paths[i], reason))
                continue
            col["image"].append(images[i])
            col["label"].append(labels[i])
            col["path"].append(paths[i])
            if args.group_column:
                col["group"].append(groups[i])
        out[canon] = col
    report.bad_files = bad
    return out, report, class_names


# ----------------------------------------------------------------------------------------------------
# Assembly


def _subsample(col: dict[str, list], n: int | None, seed: int) -> dict[str, list]:
    if n is None or n >= len(col["label"]):
        return col
    _, keep = stratified_split(col["label"], n / len(col["label"]), seed)
    return {k: [v[i] for i in keep] for k, v in col.items()}


def load_skin_dataset(
    args: DataArguments | None = None, *, known_classes: Sequence[str] = (), **overrides: Any
) -> SkinData:
    """Load images from the configured source into ``train``/``validation``/``test`` splits.

    Args:
        args: Data options; ``None`` means the defaults (the embedded synthetic set).
        known_classes: The classes of a model the data will be evaluated with: an image folder may then
            hold a single class folder (see :func:`scan_image_folder`).
        **overrides: Field values replacing those of ``args`` (e.g. ``data_dir=...``).

    Returns:
        A :class:`SkinData` holding the ``DatasetDict`` and the :class:`DataReport`.

    Raises:
        FileNotFoundError: The data path does not exist.
        ValueError: The source holds no usable images or lacks a needed column.
    """
    import datasets

    args = DataArguments(**({**(vars(args) if args else {}), **overrides}))
    if args.dataset_name:
        columns, report, class_names = _normalise_hf(args, _load_hf(args))
    else:
        root = args.data_dir
        if root is None:
            spec = SyntheticSpec(
                num_classes=args.synthetic_num_classes,
                images_per_class=args.synthetic_images_per_class,
                image_size=args.synthetic_image_size,
                difficulty=args.synthetic_difficulty,
                seed=args.synthetic_seed,
            )
            root = str(generate_synthetic_dataset(spec, args.cache_dir))
        columns, report, class_names = _load_folder(args, root, known_classes)
        if args.data_dir is None:
            report.source = "synthetic (embedded default, not real skin images)"

    # One flat table with stable sample ids, then split by index.
    order = list(columns)
    flat: dict[str, list] = {k: [] for k in columns[order[0]]}
    origin: list[str] = []
    for split in order:
        for k in flat:
            flat[k].extend(columns[split][k])
        origin.extend([split] * len(columns[split]["label"]))
    n = len(flat["label"])
    if n == 0:
        raise ValueError(
            f"no readable images in {report.root or report.source} ({len(report.bad_files)} bad files)"
        )
    flat["sample_id"] = list(range(n))
    origin_arr = np.array(origin)
    labels = np.asarray(flat["label"])
    groups = np.asarray(flat["group"], dtype=object) if "group" in flat else None
    if args.dedupe_groups:
        if "all" not in columns:
            raise ValueError(
                "--dedupe_groups re-assigns images to splits, but the data come with predefined splits; "
                "run recipes/audit_data.py to see which copies cross them"
            )
        from skinacc.audit import dedupe_groups

        gid, copies = dedupe_groups(
            flat["image"],
            None if groups is None else list(groups),
            default_num_workers(args.num_workers) + 1,
            args.cache_dir,
        )
        report.dedupe = {"copies": copies, "split_groups": int(gid.max()) + 1 if n else 0}
        logger.info("--dedupe_groups: %d images are copies and stay in their original's split", copies)
        if "group" not in flat:  # a given group column keeps its values; the split uses the merged groups
            flat["group"] = [f"dup{g}" for g in gid]
        groups = gid.astype(str).astype(object)
    if "all" in columns:
        idx = split_indices(labels, args.test_size, args.val_size, args.split_seed, groups)
    else:
        idx = {s: np.flatnonzero(origin_arr == s) for s in ("train", "validation", "test")}
        if not len(idx["test"]):
            tr, te = stratified_split(
                labels[idx["train"]],
                args.test_size,
                args.split_seed,
                None if groups is None else groups[idx["train"]],
            )
            idx["train"], idx["test"] = idx["train"][tr], idx["train"][te]
        if not len(idx["validation"]) and args.val_size > 0:
            tr, va = stratified_split(
                labels[idx["train"]],
                args.val_size,
                args.split_seed + 1,
                None if groups is None else groups[idx["train"]],
            )
            idx["train"], idx["validation"] = idx["train"][tr], idx["train"][va]

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=class_names),
            "path": datasets.Value("string"),
            **({"group": datasets.Value("string")} if groups is not None else {}),
            "sample_id": datasets.Value("int64"),
        }
    )
    dd = {}
    for split, ix in idx.items():
        col = {k: [flat[k][i] for i in ix] for k in features}
        cap = args.max_train_samples if split == "train" else args.max_eval_samples
        col = _subsample(col, cap, args.split_seed)
        dd[split] = datasets.Dataset.from_dict(col, features=features, split=split)
    ds = datasets.DatasetDict(dd)
    report.class_names = class_names
    report.num_images = n
    report.split_sizes = {k: len(v) for k, v in ds.items()}
    return SkinData(ds, report)
