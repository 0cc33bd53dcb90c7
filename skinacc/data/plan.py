"""A run's data behind one interface, read map-style or streamed: loaders per split, how an epoch starts
(and resumes part-way), split sizes, the training labels, and the paths of evaluated samples.

:func:`build_data_plan` picks the kind from ``--streaming``; nothing that uses a plan asks which kind it
has. Map-style loaders go through ``accelerator.prepare`` (accelerate shards batches over processes, and
its seedable sampler makes the order a function of (seed, epoch)); streamed loaders read each rank's
own shards and are not prepared (a prepared iterable would have every rank read every batch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.config import DataArguments, TrainArguments
from skinacc.data.data_config import AugmentConfig, DataConfig, resolve_augment
from skinacc.data.loaders import BalancedSampler, build_dataloader, get_transform
from skinacc.data.report import SkinData, paths_of
from skinacc.data.sources import load_skin_dataset
from skinacc.data.streaming import StreamingLoader, load_streaming, stream_paths
from skinacc.data.transforms import ImageTransform, preresize, set_transforms

__all__ = [
    "SKIP_LOG",
    "DataPlan",
    "EvalPlan",
    "augment_config",
    "build_data_plan",
    "build_eval_plan",
    "close_loader",
    "load_data",
    "loader_kwargs",
    "merge_validation_into_train",
]

logger = logging.getLogger(__name__)

#: Images that fail to decode during a run are appended here (then merged into data_report.json).
SKIP_LOG = "skipped_images.jsonl"


@dataclass
class DataPlan:
    """The data a run reads.

    Attributes:
        data: What was loaded (splits, class names, the data report).
        source: The splits actually read (map-style: the pre-resized cache with ``--preresize``, and
            train + validation with ``--final_fit``; streamed: the streams), before transforms.
        train_loader, val_loader, test_loader: This process's loaders.
        sizes: Images per split, as trained (after ``--final_fit``'s merge).
        workers: Decoding processes per training process.
        streaming: Read as a stream of shards.
        train_labels: Class of every training image (for balanced class weights), when known.
    """

    data: SkinData
    source: Any
    train_loader: Any
    val_loader: Any
    test_loader: Any
    sizes: dict[str, int]
    workers: int
    streaming: bool = False
    train_labels: Any = None

    def epoch_loader(self, accelerator, epoch: int, skip: int = 0):
        """The training loader for ``epoch`` (0-based), continuing after its first ``skip`` batches (a
        resumed run): the order, the augmentation's randomness and the mixing are functions of the epoch."""
        self.train_loader.set_epoch(epoch)
        self.train_transform.set_epoch(epoch)
        if not skip:
            return self.train_loader
        if self.streaming:
            return self.train_loader.skip_first(skip)
        return accelerator.skip_first_batches(self.train_loader, skip)

    @property
    def train_transform(self) -> ImageTransform:
        if self.streaming:
            return self.train_loader.transform
        return get_transform(self.train_loader.dataset)

    def paths(self, split: str, sample_ids) -> list[str]:
        """Paths of ``split``'s images by ``sample_id`` (as an evaluation gathered them)."""
        table = self.data.dataset[split]
        return stream_paths(table, sample_ids) if self.streaming else paths_of(table, sample_ids)

    def close(self) -> None:
        """End the loaders' worker processes now. A process that goes on after its run (a run called
        in-process) otherwise leaves persistent workers to the garbage collector, whose shutdown of
        them waits seconds per worker at whatever moment it comes."""
        for loader in (self.train_loader, self.val_loader, self.test_loader):
            close_loader(loader)


def close_loader(loader) -> None:
    """End a loader's worker processes (a DataLoader's persistent workers, a streaming loader's pool)."""
    if hasattr(loader, "close"):
        loader.close()
        return
    # torch has no public way to end a DataLoader's persistent workers before the loader is collected.
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
        loader._iterator = None


def load_data(data_args: DataArguments, known_classes: list[str] | None = None) -> SkinData:
    """The data ``data_args`` name, read whole (``load_skin_dataset``) or as streams of shards
    (``load_streaming``, with ``--streaming``)."""
    if data_args.streaming:
        return load_streaming(data_args, known_classes=known_classes)
    return load_skin_dataset(data_args, known_classes=known_classes)


@dataclass
class EvalPlan:
    """What an evaluation reads: the evaluated rows and this process's loader over those not done yet.

    Attributes:
        table: Every evaluated row (one split, or all splits), before ``skip``.
        loader: This process's batches of the rows left (map-style: prepared; streamed: its shards).
        size: Rows left to evaluate.
        streaming: Read as a stream of shards.
    """

    table: Any
    loader: Any
    size: int
    streaming: bool = False

    def paths(self, sample_ids) -> list[str]:
        """Paths of evaluated images by ``sample_id``."""
        return stream_paths(self.table, sample_ids) if self.streaming else paths_of(self.table, sample_ids)


def build_eval_plan(
    accelerator,
    data: SkinData,
    split: str,
    cfg: DataConfig,
    batch_size: int,
    workers: int,
    *,
    skip=(),
    pin_memory: bool = True,
) -> EvalPlan:
    """The loader of an evaluation of ``split`` (``"all"``: every split) at preprocessing ``cfg``,
    leaving out the ``sample_id``s in ``skip`` (already evaluated, ``--resume``)."""
    import datasets

    streaming = data.streaming
    table = (
        datasets.concatenate_datasets([data.dataset[s] for s in data.dataset])
        if split == "all"
        else data.dataset[split]
    )
    skip = set(skip)
    todo = table.filter(lambda sid: sid not in skip, input_columns="sample_id") if skip else table
    if streaming:  # each rank reads its share of the shards; padding rows are dropped after gathering
        size = (sum(data.sizes.values()) if split == "all" else data.sizes[split]) - len(skip)
        loader = StreamingLoader(
            todo, ImageTransform(cfg, train=False), batch_size, size, train=False, workers=workers,
            device=accelerator.device, rank=accelerator.process_index, world_size=accelerator.num_processes,
        )  # fmt: skip
    else:
        size = len(todo)
        ds = set_transforms({"eval": todo}, cfg)["eval"]
        loader = accelerator.prepare(
            build_dataloader(
                ds,
                batch_size,
                train=False,
                num_workers=workers,
                pin_memory=pin_memory,
                persistent_workers=False,
            )
        )
    return EvalPlan(table, loader, size, streaming)


def augment_config(data_args: DataArguments) -> AugmentConfig:
    """The training augmentation that ``data_args`` asks for (preset, then any knob given)."""
    return resolve_augment(
        data_args.augment,
        data_args.hflip,
        data_args.crop_scale_min,
        data_args.color_jitter,
        data_args.auto_augment,
        data_args.random_erasing,
    )


def loader_kwargs(data_args: DataArguments, workers: int, seed: int) -> dict[str, Any]:
    """The ``build_dataloader`` settings of a run (benchmarks building extra loaders use the same)."""
    return dict(
        num_workers=workers,
        pin_memory=data_args.pin_memory,
        persistent_workers=data_args.persistent_workers,
        prefetch_factor=data_args.prefetch_factor,
        seed=seed,
    )


def build_data_plan(
    accelerator,
    data: SkinData,
    data_args: DataArguments,
    args: TrainArguments,
    data_cfg: DataConfig,
    eval_cfg: DataConfig,
    workers: int,
    need_validation: bool = True,
) -> DataPlan:
    """This process's loaders for ``data`` (from ``load_skin_dataset`` or ``load_streaming``).

    Args:
        data_cfg, eval_cfg: Training and validation/test preprocessing (``--eval_image_size``).
        workers: Decoding processes per training process.
        need_validation: Refuse an empty validation split (unless ``--final_fit``): the schedule, early
            stopping and the best-model choice need one. A speed benchmark, which never validates, passes
            False.
    """
    if data_args.streaming:
        return _streaming_plan(accelerator, data, data_args, args, data_cfg, eval_cfg, workers)
    source = data.dataset
    if data_args.preresize:
        with accelerator.main_process_first():  # built once by the main process, then read from cache
            size = max(data_cfg.resize_size, eval_cfg.resize_size)
            source = preresize(source, size, data_args.cache_dir, num_proc=max(1, workers))
    if args.final_fit:
        source = merge_validation_into_train(source)
    elif need_validation and not len(source["validation"]):
        raise ValueError(
            f"--val_size={data_args.val_size}: the validation split is empty, but the schedule, early "
            "stopping and the best-model choice need one (or train with --final_fit)"
        )
    ds = set_transforms(
        source,
        data_cfg,
        seed=args.seed,
        fast_decode=data_args.fast_decode,
        augment=augment_config(data_args),
        skip_log=str(Path(args.output_dir) / SKIP_LOG),
        eval_cfg=eval_cfg,
    )
    kw = loader_kwargs(data_args, workers, args.seed)
    train_labels = source["train"]["label"]
    sampler = BalancedSampler(train_labels, seed=args.seed) if args.sampler == "balanced" else None
    eval_bs = args.eval_batch_size or 2 * args.batch_size
    loaders = accelerator.prepare(
        build_dataloader(ds["train"], args.batch_size, train=True, sampler=sampler, **kw),
        build_dataloader(ds["validation"], eval_bs, train=False, **kw),
        build_dataloader(ds["test"], eval_bs, train=False, **kw),
    )
    sizes = {k: len(v) for k, v in ds.items()}
    return DataPlan(data, source, *loaders, sizes=sizes, workers=workers, train_labels=train_labels)


def _streaming_plan(
    accelerator, data, data_args: DataArguments, args: TrainArguments, data_cfg, eval_cfg, workers
) -> DataPlan:
    """One :class:`StreamingLoader` per split: this rank's share of the shards."""
    import datasets

    streams = dict(data.dataset)
    sizes = dict(data.sizes)
    if args.final_fit:
        if sizes["validation"]:
            streams["train"] = datasets.concatenate_datasets([streams["train"], streams["validation"]])
        sizes["train"] += sizes["validation"]
        streams["validation"], sizes["validation"] = streams["validation"].take(0), 0
    elif not sizes["validation"]:
        raise ValueError(
            f"--dataset_name={data_args.dataset_name!r}: the shards have no validation split, but the "
            "schedule, early stopping and the best-model choice need one (or train with --final_fit)"
        )
    aug = augment_config(data_args)
    skip_log = str(Path(args.output_dir) / SKIP_LOG)
    eval_bs = args.eval_batch_size or 2 * args.batch_size

    def loader(split: str, train: bool, bs: int) -> StreamingLoader:
        t = ImageTransform(
            data_cfg if train else eval_cfg, train=train, seed=args.seed, fast_decode=data_args.fast_decode,
            augment=aug if train else None, skip_log=skip_log,
        )  # fmt: skip
        return StreamingLoader(
            streams[split], t, bs, sizes[split], train=train, seed=args.seed,
            shuffle_buffer=data_args.shuffle_buffer, workers=workers, prefetch=data_args.prefetch_factor,
            device=accelerator.device, rank=accelerator.process_index, world_size=accelerator.num_processes,
        )  # fmt: skip

    loaders = (
        loader("train", True, args.batch_size),
        loader("validation", False, eval_bs),
        loader("test", False, eval_bs),
    )
    if sizes["train"] < args.batch_size * accelerator.num_processes:
        raise ValueError(
            f"--batch_size={args.batch_size}: the training split has {sizes['train']} images, fewer than one "
            f"batch for each of the {accelerator.num_processes} processes"
        )
    train_labels = None
    if args.class_weighting == "balanced":
        known = data.label_counts
        parts = ["train", "validation"] if args.final_fit else ["train"]
        if all(p in known for p in parts):
            counts = np.sum([known[p] for p in parts], axis=0)
            train_labels = np.repeat(np.arange(len(counts)), counts)
        else:  # not recorded with the shards: one pass over the label column
            logger.info("--class_weighting balanced: counting the training stream's labels (one pass)")
            train_labels = [r["label"] for r in streams["train"].select_columns(["label"])]
    return DataPlan(
        data, streams, *loaders, sizes=sizes, workers=workers, streaming=True, train_labels=train_labels
    )


def merge_validation_into_train(dataset_dict):
    """``train`` + ``validation`` as the training split and an empty validation split (``--final_fit``)."""
    import datasets

    train, val = dataset_dict["train"], dataset_dict["validation"]
    return datasets.DatasetDict(
        {
            **dataset_dict,
            "train": datasets.concatenate_datasets([train, val]) if len(val) else train,
            "validation": val.select([]),
        }
    )
