"""Pre-resized Parquet shards: any source skinacc reads written once as a Hugging Face dataset folder.

:func:`write_shards` turns an image folder, a ``datasets`` dataset or the embedded default into
``<out>/data/<split>-NNNNN-of-MMMMM.parquet``: images shrunk once to the resize size and re-encoded as
JPEG, with ``label`` (``ClassLabel``), ``sample_id``, ``path`` and ``group``, the split already made, the
training split in a seeded random order. The folder is a Hugging Face dataset as it stands
(``load_dataset(folder)``, ``push_to_hub``) and carries ``skinacc_shards.json`` (split sizes, classes,
how it was made) and the source's ``data_report.json``. :func:`skinacc.data.streaming.load_streaming`
reads them back as streams; :func:`prepare_shards` is ``skinacc prepare-shards``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.config import DataArguments
from skinacc.config.tools import ShardArguments

__all__ = ["SHARDS_META", "prepare_shards", "read_shards_meta", "write_shards"]

logger = logging.getLogger(__name__)


#: Written beside the shards: split sizes (the epoch length of a stream), classes, provenance.
SHARDS_META = "skinacc_shards.json"


SHARDS_FORMAT = "skinacc-shards/1"


def _shard_count(n: int, images_per_shard: int, multiple: int) -> int:
    """Shards for ``n`` rows: about ``images_per_shard`` each, a multiple of ``multiple`` (so 1, 2, 4, 8
    ranks get whole shards), never more shards than rows."""
    if n == 0:
        return 0
    k = max(1, math.ceil(n / images_per_shard))
    k = math.ceil(k / multiple) * multiple
    return min(k, n)


def _dataset_card(meta: dict[str, Any], features) -> str:
    """README.md with the YAML the Hub (and ``load_dataset``) reads: the splits' files and sizes."""
    import yaml

    configs = [
        {
            "config_name": "default",
            "data_files": [
                {"split": s, "path": f"data/{s}-*.parquet"}
                for s, v in meta["splits"].items()
                if v["num_examples"]
            ],
        }
    ]
    header = yaml.safe_dump(
        {"configs": configs, "tags": ["image-classification", "skinacc"]}, sort_keys=False
    )
    sizes = "\n".join(f"| {s} | {v['num_examples']} | {v['num_shards']} |" for s, v in meta["splits"].items())
    return (
        f"---\n{header}---\n\n# Skin-lesion images as pre-resized Parquet shards\n\n"
        f"Written by `skinacc` (`recipes/prepare_shards.py`) from `{meta['source']}`: images shrunk to "
        f"{meta['resize_size']} px on the shorter side (JPEG quality {meta['jpeg_quality']}), the split "
        "already made (`split_seed` below; groups never span two splits), the training split in a "
        f"seeded random order (seed {meta['shuffle_seed']}).\n\n"
        "| split | images | shards |\n|---|---:|---:|\n"
        f"{sizes}\n\nClasses ({len(meta['class_names'])}): {', '.join(meta['class_names'])}.\n\n"
        "Columns: `image`, `label` (class id; names in the features), `sample_id` (stable row id), `path` "
        "(relative to the source)" + (", `group`" if "group" in features else "") + ".\n\n"
        "Train on it without a local copy:\n\n```bash\n"
        "accelerate launch recipes/train.py --dataset_name <this repo or folder> --streaming\n```\n\n"
        f"Files left out of the source and why: `data_report.json` ({meta['bad_files']} files).\n"
    )


def write_shards(
    data,
    out_dir: str | os.PathLike,
    resize_size: int,
    *,
    images_per_shard: int = 1000,
    shard_multiple: int = 8,
    shuffle_seed: int = 0,
    jpeg_quality: int = 90,
    num_proc: int = 1,
    cache_dir: str | os.PathLike | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every split of ``data`` as pre-resized Parquet shards (see the module docstring).

    The folder is built under ``<out_dir>.partial`` and renamed into place at the end, so an
    interrupted run never leaves a folder that looks complete.

    Args:
        data: A :class:`skinacc.data.SkinData` (from :func:`skinacc.data.load_skin_dataset`).
        out_dir: Target folder; must not exist yet.
        resize_size: Shorter side of the stored images (the training transform's resize size).
        images_per_shard: About this many images per shard.
        shard_multiple: Round each split's shard count up to a multiple of this, so that any number of
            ranks dividing it reads whole shards (otherwise every rank reads every shard and keeps its
            share of rows).
        shuffle_seed: Seed of the training split's row order (a stream's shuffle buffer only mixes
            nearby rows; class-sorted shards would feed it one class at a time).
        jpeg_quality: Quality of the re-encoded JPEGs.
        num_proc: Processes for decoding and resizing.
        cache_dir: Where the resize pass keeps its Arrow cache (default: a temporary folder in the output).
        extra_meta: Merged into ``skinacc_shards.json`` (e.g. the options used).

    Returns:
        The metadata written to ``skinacc_shards.json``, with ``seconds`` and ``images_per_sec``.

    Raises:
        FileExistsError: ``out_dir`` exists.
    """
    from skinacc.data.report import BadFile
    from skinacc.data.transforms import preresize

    out = Path(out_dir).expanduser()
    if out.exists():
        raise FileExistsError(
            f"--output_dir={str(out)!r} exists; choose a new folder (shards are never overwritten)"
        )
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # the leftovers of an interrupted run
    (partial / "data").mkdir(parents=True)
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else partial / ".cache"
    small = preresize(data.dataset, resize_size, str(cache), num_proc=num_proc, quality=jpeg_quality)
    report = data.report
    splits: dict[str, Any] = {}
    total = 0
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one bar per shard would bury the log
    for split, ds in small.items():
        # A row the resize pass could not decode still points at the original file: report and drop it.
        raw = ds.cast_column("image", datasets.Image(decode=False))
        ok = [im.get("bytes") is not None for im in raw["image"]]
        if not all(ok):
            for i in np.flatnonzero(~np.asarray(ok)):
                report.bad_files.append(
                    BadFile(str(raw[int(i)]["path"]), "could not be decoded for the shards")
                )
            raw = raw.select(np.flatnonzero(ok))
        if split == "train":
            raw = raw.shuffle(seed=shuffle_seed)
        # Stored decodable (``Image()``): a user's ``load_dataset`` gets PIL images; skinacc reads bytes.
        raw = raw.flatten_indices(num_proc=None).cast_column("image", datasets.Image())
        n = len(raw)
        k = _shard_count(n, images_per_shard, shard_multiple)
        for i in range(k):
            part = raw.shard(num_shards=k, index=i, contiguous=True)
            part.to_parquet(str(partial / "data" / f"{split}-{i:05d}-of-{k:05d}.parquet"))
        counts = np.bincount(np.asarray(raw["label"], dtype=np.int64), minlength=len(data.class_names))
        splits[split] = {"num_examples": n, "num_shards": k, "label_counts": counts.tolist()}
        total += n
        logger.info("%s: %d images in %d shards", split, n, k)
    if bars:
        datasets.enable_progress_bars()
    seconds = time.perf_counter() - t0
    meta = {
        "format": SHARDS_FORMAT,
        "source": report.source + (f" ({report.root})" if report.root else ""),
        "class_names": list(data.class_names),
        "splits": splits,
        "resize_size": resize_size,
        "jpeg_quality": jpeg_quality,
        "shuffle_seed": shuffle_seed,
        "bad_files": len(report.bad_files),
        "columns": list(small["train"].column_names),
        "seconds": round(seconds, 2),
        "images_per_sec": round(total / seconds, 2) if seconds > 0 else None,
        **(extra_meta or {}),
    }
    report.save(partial / "data_report.json")
    (partial / SHARDS_META).write_text(json.dumps(meta, indent=2))
    (partial / "README.md").write_text(_dataset_card(meta, small["train"].features))
    if not cache_dir:
        shutil.rmtree(partial / ".cache", ignore_errors=True)
    os.replace(partial, out)
    return meta


def read_shards_meta(name: str) -> dict[str, Any] | None:
    """``skinacc_shards.json`` of a local shard folder or a Hub dataset, or None if it has none."""
    local = Path(name).expanduser()
    if local.is_dir():
        f = local / SHARDS_META
        return json.loads(f.read_text()) if f.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(name, SHARDS_META, repo_type="dataset")).read_text())
    except Exception as e:  # not there, or no network: the dataset card's split sizes may still do
        logger.info("no %s for %s (%s)", SHARDS_META, name, e)
        return None


def prepare_shards(data_args: DataArguments, args: ShardArguments) -> dict[str, Any]:
    """Load the data ``data_args`` name, split it as training would and write the shards to
    ``args.output_dir``; the shards' metadata (``skinacc prepare-shards`` prints it and pushes)."""
    from skinacc.data.loaders import default_num_workers
    from skinacc.data.sources import load_skin_dataset

    data = load_skin_dataset(data_args)
    print(data.report.summary())
    meta = write_shards(
        data,
        args.output_dir,
        args.shard_size,
        images_per_shard=args.images_per_shard,
        shard_multiple=args.shard_multiple,
        shuffle_seed=args.shuffle_seed,
        jpeg_quality=args.jpeg_quality,
        num_proc=args.num_proc or default_num_workers(None),
        cache_dir=data_args.cache_dir,
        extra_meta={
            "split": {
                k: getattr(data_args, k)
                for k in ("test_size", "val_size", "split_seed", "group_column", "dedupe_groups")
            }
        },
    )
    return meta
