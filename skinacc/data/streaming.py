"""Data past one disk: pre-resized Parquet shards (:mod:`skinacc.data.shards`) streamed to every rank,
resumable exactly.

:func:`load_streaming` and :class:`StreamingLoader` read such shards (local, or a Hub dataset id)
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
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from skinacc.data.pool import make_pool, ordered_map, worker_transform
from skinacc.data.shards import SHARDS_META, read_shards_meta
from skinacc.data.transforms import ImageTransform

__all__ = ["StreamingLoader", "load_streaming", "stream_paths"]

logger = logging.getLogger(__name__)


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

    from skinacc.data.report import DataReport, SkinData

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
        from skinacc.data.report import BadFile

        prior = json.loads((local / "data_report.json").read_text())
        report.bad_files = [BadFile(b["path"], b["reason"]) for b in prior.get("bad_files", [])]
    # Class counts per split (for --class_weighting balanced without reading the stream), when recorded.
    counts = {
        s: v["label_counts"] for s, v in ((meta or {}).get("splits") or {}).items() if "label_counts" in v
    }
    return SkinData(
        datasets.IterableDatasetDict(out), report, streaming=True, sizes=sizes, label_counts=counts
    )


def _decode_job(job: tuple[int, list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """Decode and transform one batch of raw rows with the worker's transform (runs in a pool worker).
    Tensors travel back through shared memory (torch's multiprocessing pickler), as from DataLoader
    workers, not through the pipe: a copy of 10 MB per batch would cost the main process."""
    epoch, rows = job
    return _decode_rows(worker_transform(), epoch, rows)


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
