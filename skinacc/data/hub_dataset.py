"""Hugging Face datasets as a source: a Hub id or a ``save_to_disk`` folder, its image and label columns
normalised to skinacc's (``image``, ``label`` as ``ClassLabel``, ``sample_id``, ``path``)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from skinacc.config import DataArguments
from skinacc.data.images import check_image
from skinacc.data.loaders import default_num_workers
from skinacc.data.report import SPLIT_ALIASES, BadFile, DataReport

__all__ = ["read_hf_dataset"]

logger = logging.getLogger(__name__)


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


def read_hf_dataset(args: DataArguments) -> tuple[Any, DataReport, list[str]]:
    """Load ``args.dataset_name`` (Hub id or ``save_to_disk`` folder) and normalise its columns.

    Returns:
        ``(columns by split, report, class names)``, as :func:`skinacc.data.folder.read_image_folder`.
    """
    return _normalise_hf(args, _load_hf(args))
