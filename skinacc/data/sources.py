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

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from skinacc.config import DataArguments
from skinacc.data.folder import read_image_folder
from skinacc.data.hub_dataset import read_hf_dataset
from skinacc.data.loaders import default_num_workers
from skinacc.data.report import BadFile, DataReport, SkinData, paths_of
from skinacc.data.splits import cv_split, split_indices, stratified_split
from skinacc.data.synthetic import SyntheticSpec, generate_synthetic_dataset

__all__ = ["BadFile", "DataReport", "SkinData", "load_skin_dataset", "paths_of"]

logger = logging.getLogger(__name__)


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
        columns, report, class_names = read_hf_dataset(args)
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
        columns, report, class_names = read_image_folder(args, root, known_classes)
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
    if args.cv_folds and "all" not in columns:
        raise ValueError(
            "--cv_folds cuts the images into folds itself, but the data come with predefined splits "
            "(train/ test/ folders or dataset splits): give the images as one pool"
        )
    if args.cv_folds:
        if args.cv_fold is None:
            raise ValueError(
                "--cv_folds: load one fold at a time (--cv_fold k); skinacc.run.cv runs them all"
            )
        idx = cv_split(labels, args.test_size, args.cv_folds, args.cv_fold, args.split_seed, groups)
    elif "all" in columns:
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
