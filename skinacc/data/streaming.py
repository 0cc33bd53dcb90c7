"""Data past one disk: pre-resized Parquet shards, streamed to every rank, resumable exactly.

Two halves:

- :func:`write_shards` turns any source skinacc reads (image folder, ``datasets`` dataset, the
  embedded default) into ``<out>/data/<split>-NNNNN-of-MMMMM.parquet``: images shrunk once to the
  resize size and re-encoded as JPEG, with ``label`` (``ClassLabel``), ``sample_id``, ``path`` and
  ``group``, the split already made, the training split in a seeded random order. The folder is a
  Hugging Face dataset as it stands (``load_dataset(folder)``, ``push_to_hub``) and carries
  ``skinacc_shards.json`` (split sizes, classes, how it was made) and the source's ``data_report.json``.
- :func:`load_streaming` and :class:`StreamingLoader` read such shards (local, or a Hub dataset id)
  as ``datasets.IterableDataset`` streams, one per split, split across ranks with
  ``datasets.distributed.split_dataset_by_node``.

Why our own loader rather than a ``torch.utils.data.DataLoader`` over the stream: a DataLoader with
workers hands each worker a subset of the shards, so the order of batches depends on the number of
workers and where each worker's shards end, and ``IterableDataset.state_dict`` restarts a shuffle
buffer empty (the examples it held are lost: ``datasets`` warns so when loading one). Here the main
process reads the rank's stream (raw JPEG bytes, cheap) in one fixed order, a pool of processes
decodes and augments whole batches (the costly part), and results come back in order. The batch
sequence is then a pure function of ``(seed, epoch, rank, world size)``; a resumed run skips the
batches already trained on at the raw-row level (read, never decoded) and continues identically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinacc.data.transforms import ImageTransform
from skinacc.stopping import shield_worker

__all__ = [
    "SHARDS_META",
    "StreamingLoader",
    "load_streaming",
    "make_pool",
    "ordered_map",
    "read_shards_meta",
    "stream_paths",
    "write_shards",
]

logger = logging.getLogger(__name__)

#: Written beside the shards: split sizes (the epoch length of a stream), classes, provenance.
SHARDS_META = "skinacc_shards.json"
SHARDS_FORMAT = "skinacc-shards/1"


# ----------------------------------------------------------------------------------------------------
# Writing shards


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
    from skinacc.data.sources import BadFile
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


# ----------------------------------------------------------------------------------------------------
# Reading shards as streams


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


def load_streaming(args, known_classes: list[str] | None = None):
    """Open ``--dataset_name`` (a shard folder or a Hub dataset) as one ``IterableDataset`` per split.

    Returns:
        A :class:`skinacc.data.SkinData` whose ``dataset`` maps split -> ``IterableDataset`` (image
        column undecoded; ``label``, ``sample_id``, ``path`` and, if present, ``group``), and whose
        report carries the split sizes.

    Raises:
        ValueError: A split's size is unknown, the labels carry no class names, or columns are missing.
    """
    import datasets

    from skinacc.data.sources import DataReport, SkinData

    name = args.dataset_name
    local = Path(name).expanduser()
    try:
        dd = datasets.load_dataset(
            str(local) if local.is_dir() else name, args.dataset_config, streaming=True
        )
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"--dataset_name={name!r} --streaming: not found on disk or on the Hub ({e})"
        ) from e
    except Exception as e:
        raise RuntimeError(
            f"--dataset_name={name!r} --streaming: could not open ({type(e).__name__}: {e})"
        ) from e
    meta = read_shards_meta(name)
    aliases = {"val": "validation", "valid": "validation", "dev": "validation", "testing": "test"}
    out: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for split, ds in dd.items():
        canon = aliases.get(split, split)
        if canon not in ("train", "validation", "test"):
            logger.warning("dataset split %r ignored (not train/validation/test)", split)
            continue
        if args.image_column != "image" and args.image_column in (ds.column_names or []):
            ds = ds.rename_column(args.image_column, "image")
        if args.label_column != "label" and args.label_column in (ds.column_names or []):
            ds = ds.rename_column(args.label_column, "label")
        cols = ds.column_names or []
        missing = [c for c in ("image", "label") if c not in cols]
        if missing:
            raise ValueError(
                f"--dataset_name={name!r} split {split!r}: no column(s) {missing}; columns are {cols} "
                "(set --image_column/--label_column)"
            )
        if args.group_column and args.group_column != "group" and args.group_column in cols:
            ds = ds.rename_column(args.group_column, "group")
        n = None
        if meta and canon in meta.get("splits", {}):
            n = meta["splits"][canon]["num_examples"]
        elif ds.info.splits and split in ds.info.splits and ds.info.splits[split].num_examples:
            n = ds.info.splits[split].num_examples
        if n is None:
            raise ValueError(
                f"--dataset_name={name!r} --streaming: the size of split {split!r} is unknown (it sets the "
                f"epoch length and the lr schedule); write the data with recipes/prepare_shards.py (which "
                f"records it in {SHARDS_META}) or use a dataset whose card lists its split sizes"
            )
        out[canon] = ds.cast_column("image", datasets.Image(decode=False))
        sizes[canon] = int(n)
    if "train" not in out and not known_classes:
        raise ValueError(f"--dataset_name={name!r} --streaming: no train split (splits: {list(dd)})")
    first = out.get("train") or next(iter(out.values()))
    feat = (first.features or {}).get("label")
    if not isinstance(feat, datasets.ClassLabel):
        raise ValueError(
            f"--dataset_name={name!r} --streaming: the label column must be a ClassLabel (class names are "
            "needed before the stream is read); recipes/prepare_shards.py writes one"
        )
    for canon in ("validation", "test"):
        if canon not in out:  # an empty stream keeps the rest of the pipeline uniform
            out[canon] = first.take(0)
            sizes[canon] = 0
    report = DataReport(
        source=f"stream:{name}",
        class_names=list(feat.names),
        num_images=sum(sizes.values()),
        split_sizes=sizes,
        predefined_splits=True,
    )
    if local.is_dir() and (local / "data_report.json").is_file():
        from skinacc.data.sources import BadFile

        prior = json.loads((local / "data_report.json").read_text())
        report.bad_files = [BadFile(b["path"], b["reason"]) for b in prior.get("bad_files", [])]
    data = SkinData(datasets.IterableDatasetDict(out), report)
    data.sizes = sizes  # type: ignore[attr-defined]
    # Class counts per split (for --class_weighting balanced without reading the stream), when recorded.
    data.label_counts = {  # type: ignore[attr-defined]
        s: v["label_counts"] for s, v in ((meta or {}).get("splits") or {}).items() if "label_counts" in v
    }
    return data


def ordered_map(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int, prefetch: int = 2, pool=None
) -> Iterator[Any]:
    """``fn(item)`` for every item, in order, computed by ``workers`` processes at most
    ``workers x prefetch`` items ahead (``multiprocessing.Pool.imap`` reads its whole input at once;
    a stream of 250k images must not be). ``workers=0`` computes in this process.

    Args:
        pool: A pool to use (kept open by the caller); else one is made for this call.
    """
    if workers <= 0 and pool is None:
        for item in items:
            yield fn(item)
        return
    own = pool is None
    if own:
        pool = make_pool(workers)
    try:
        pending: deque = deque()
        limit = max(1, workers * prefetch)
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        if own:
            pool.terminate()


def _worker_init(owner: int) -> None:
    # Decoding workers use one thread each (as DataLoader workers do): the pool has the cores.
    torch.set_num_threads(1)
    # A stop request is the training process's business: the worker ignores Ctrl+C and any SIGTERM
    # that does not come from its owner (the pool ends its workers with SIGTERM), and dies with it.
    shield_worker(owner)


def make_pool(workers: int, transform: ImageTransform | None = None):
    """A process pool for decoding (forked, like DataLoader workers on Linux), each worker holding
    ``transform`` when given."""
    import atexit
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    owner = os.getpid()
    if transform is None:
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(owner,))
    else:
        pool = ctx.Pool(workers, initializer=_worker_init_transform, initargs=(owner, transform))
    # Ended before the interpreter tears modules down (a pool collected later complains on stderr).
    atexit.register(pool.terminate)
    return pool


#: The transform of the loader that made this worker's pool (given once, at fork; not per batch).
_WORKER_TRANSFORM: ImageTransform | None = None


def _worker_init_transform(owner: int, transform: ImageTransform) -> None:
    global _WORKER_TRANSFORM
    _worker_init(owner)
    _WORKER_TRANSFORM = transform


def _decode_job(job: tuple[int, list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """Decode and transform one batch of raw rows with the worker's transform (runs in a pool worker).
    Tensors travel back through shared memory (torch's multiprocessing pickler), as from DataLoader
    workers, not through the pipe: a copy of 10 MB per batch would cost the main process."""
    epoch, rows = job
    assert _WORKER_TRANSFORM is not None
    return _decode_rows(_WORKER_TRANSFORM, epoch, rows)


def _decode_rows(
    transform: ImageTransform, epoch: int, rows: list[dict[str, Any]]
) -> dict[str, torch.Tensor]:
    """Decode and transform one batch of raw rows."""
    transform.set_epoch(epoch)
    ids = [_sample_id(r) for r in rows]
    res = transform(
        {"image": [r["image"] for r in rows], "label": [int(r["label"]) for r in rows], "sample_id": ids}
    )
    keep = [i for i, x in enumerate(res["pixel_values"]) if x is not None]
    size = transform.cfg.image_size
    pix = (
        torch.stack([res["pixel_values"][i] for i in keep])
        if keep
        else torch.zeros((0, 3, size, size), dtype=torch.uint8)
    )
    return {
        "pixel_values": pix,
        "labels": torch.tensor([res["labels"][i] for i in keep], dtype=torch.long),
        "sample_id": torch.tensor([ids[i] for i in keep], dtype=torch.long),
    }


def _sample_id(row: dict[str, Any]) -> int:
    """The row's stable id; datasets without one get a content key (CRC32 of the image bytes or path)."""
    if row.get("sample_id") is not None:
        return int(row["sample_id"])
    im = row["image"]
    key = im.get("bytes") or (im.get("path") or "").encode()
    return zlib.crc32(key)


class StreamingLoader:
    """Batches of one rank's share of a streamed split, decoded by a process pool, in a fixed order.

    Yields the same dicts as the map-style loaders (``pixel_values`` uint8, ``labels``, ``sample_id``)
    on ``device``. With more than one process, every rank asks the others before each batch whether
    they still have one (one tiny all-reduce): training stops the epoch when any rank runs out (DDP
    needs every rank in every step); evaluation goes on until all are done, the ranks that ran out
    sending padding rows (``sample_id`` -1, dropped after gathering), so every image counts once.

    Args:
        stream: The split as a ``datasets.IterableDataset`` (image column undecoded).
        transform: Training or evaluation :class:`ImageTransform`.
        batch_size: Rows per batch on this rank.
        num_examples: Rows of the whole split (all ranks).
        train: Shuffle (``shuffle_buffer`` rows, reseeded per epoch), drop a ragged last batch, stop
            when any rank runs out. Otherwise the split in stored order, padded batches.
        seed: Shuffle seed (the epoch is added by ``set_epoch``).
        shuffle_buffer: Rows held by the shuffle buffer (training).
        workers: Decoding processes (0: decode in this process).
        prefetch: Batches per worker decoded ahead.
        device: Where batches go.
        rank: This process's index; world_size: the number of processes.
        max_steps: Cap on batches per epoch (training: the epoch length all ranks agree on).
    """

    def __init__(
        self,
        stream,
        transform: ImageTransform,
        batch_size: int,
        num_examples: int,
        *,
        train: bool,
        seed: int = 0,
        shuffle_buffer: int = 2048,
        workers: int = 0,
        prefetch: int = 2,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        from datasets.distributed import split_dataset_by_node

        self.transform = transform
        self.batch_size = batch_size
        self.num_examples = num_examples
        self.train = train
        self.workers = workers
        self.prefetch = prefetch
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        s = stream.shuffle(seed=seed, buffer_size=shuffle_buffer) if train else stream
        self.stream = split_dataset_by_node(s, rank=rank, world_size=world_size) if world_size > 1 else s
        per_rank = num_examples // world_size
        # Training: every rank takes the same number of full batches (the smallest share's).
        self.steps = (
            max(1, per_rank // batch_size)
            if train
            else math.ceil(math.ceil(num_examples / world_size) / batch_size)
        )
        self.epoch = 0
        self.skip = 0
        self._pool: dict[str, Any] = {"pool": None}  # shared with skip_first views; made on first use

    # The interface the training loop uses on DataLoaders.
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.transform.set_epoch(epoch)

    def __len__(self) -> int:
        return max(0, self.steps - self.skip)

    def skip_first(self, batches: int) -> StreamingLoader:
        """This loader, continuing after the first ``batches`` of the epoch (a resume): the skipped rows
        are read but not decoded."""
        import copy

        view = copy.copy(self)
        view.skip = int(batches)
        return view

    def close(self) -> None:
        """Stop the decoding processes (they also end with the program)."""
        if self._pool["pool"] is not None:
            self._pool["pool"].terminate()
            self._pool["pool"] = None

    def _raw_batches(self) -> Iterator[list[dict[str, Any]]]:
        self.stream.set_epoch(self.epoch)
        rows: list[dict[str, Any]] = []
        b = 0
        limit = self.steps if self.train else None
        for row in self.stream:
            rows.append(row)
            if len(rows) == self.batch_size:
                if b >= self.skip:
                    yield rows
                b += 1
                rows = []
                if limit is not None and b >= limit:
                    return
        if rows and not self.train and b >= self.skip:
            yield rows

    def _agree(self, have: bool, op) -> bool:
        if self.world_size == 1:
            return have
        import torch.distributed as dist

        flag = torch.tensor([1 if have else 0], device=self.device)
        dist.all_reduce(flag, op=op)
        return bool(flag.item())

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        import torch.distributed as dist

        if self.workers > 0:
            if self._pool["pool"] is None:
                self._pool["pool"] = make_pool(self.workers, self.transform)
            jobs = ((self.epoch, rows) for rows in self._raw_batches())
            it = ordered_map(_decode_job, jobs, self.workers, self.prefetch, pool=self._pool["pool"])
        else:
            it = (_decode_rows(self.transform, self.epoch, rows) for rows in self._raw_batches())
        size = self.transform.cfg.image_size
        while True:
            batch = next(it, None)
            if self.train:
                if not self._agree(batch is not None, dist.ReduceOp.MIN if self.world_size > 1 else None):
                    if batch is not None:
                        logger.info("a rank's stream ran out: the epoch ends here on every rank")
                    return
            else:
                if not self._agree(batch is not None, dist.ReduceOp.MAX if self.world_size > 1 else None):
                    return
                batch = _pad(batch, self.batch_size, size)
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def _pad(batch: dict[str, torch.Tensor] | None, n: int, size: int) -> dict[str, torch.Tensor]:
    """Fill an evaluation batch to ``n`` rows with padding (``sample_id`` -1) so every rank gathers
    tensors of one shape."""
    if batch is None:
        batch = {
            "pixel_values": torch.zeros((0, 3, size, size), dtype=torch.uint8),
            "labels": torch.zeros(0, dtype=torch.long),
            "sample_id": torch.zeros(0, dtype=torch.long),
        }
    k = n - len(batch["labels"])
    if k <= 0:
        return batch
    return {
        "pixel_values": torch.cat(
            [batch["pixel_values"], torch.zeros((k, 3, size, size), dtype=torch.uint8)]
        ),
        "labels": torch.cat([batch["labels"], torch.zeros(k, dtype=torch.long)]),
        "sample_id": torch.cat([batch["sample_id"], torch.full((k,), -1, dtype=torch.long)]),
    }


def stream_paths(stream, sample_ids) -> list[str]:
    """Paths of ``sample_ids`` in a streamed split (reads only its ``sample_id`` and ``path`` columns)."""
    want = {int(s) for s in sample_ids}
    found: dict[int, str] = {}
    cols = stream.column_names or []
    if "path" not in cols:
        return [str(s) for s in sample_ids]
    keep = ["sample_id", "path"] if "sample_id" in cols else ["path", "image"]  # no id: keyed by content
    for row in stream.select_columns(keep):
        sid = _sample_id(row)
        if sid in want:
            found[sid] = row["path"]
    return [found.get(int(s), str(s)) for s in sample_ids]
