"""Build every piece a training run needs, once, for the training recipe, the profiler and benchmarks.

Keeping this in one place means ``recipes/profile_training.py`` and the end-to-end throughput benchmark measure
exactly the pipeline that ``recipes/train.py`` runs (same data, transforms, loaders, model, optimizer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinacc.callbacks import build_cosine_scheduler
from skinacc.config import DataArguments, ModelArguments, TrainArguments
from skinacc.data import (
    AugmentConfig,
    BalancedSampler,
    BatchNormalizer,
    DataConfig,
    ImageTransform,
    SkinData,
    balanced_class_weights,
    build_dataloader,
    default_num_workers,
    get_transform,
    load_skin_dataset,
    preresize,
    resolve_augment,
    resolve_data_config,
    set_transforms,
)
from skinacc.data.mixing import BatchMix
from skinacc.data.sources import paths_of
from skinacc.data.streaming import StreamingLoader, load_streaming, stream_paths
from skinacc.engine import build_optimizer
from skinacc.models import WeightSource, create_model, freeze_groups
from skinacc.tracking import main_print

__all__ = [
    "TrainingPieces",
    "augment_config",
    "build_training",
    "loader_kwargs",
    "merge_validation_into_train",
]

logger = logging.getLogger(__name__)

#: Images that fail to decode during a run are appended here (then merged into data_report.json).
SKIP_LOG = "skipped_images.jsonl"


@dataclass
class TrainingPieces:
    """Everything prepared for a run (model, optimizer and loaders already through ``accelerator.prepare``)."""

    data: SkinData
    source: Any  # DatasetDict actually read (the pre-resized cache with --preresize), before transforms
    datasets: Any  # ``source`` with transforms set
    model: torch.nn.Module
    weights: WeightSource
    data_cfg: DataConfig  # training preprocessing
    optimizer: torch.optim.Optimizer
    train_loader: Any
    val_loader: Any
    test_loader: Any
    normalizer: BatchNormalizer
    loss_fn: torch.nn.Module
    workers: int
    lr_scheduler: Any = None  # per-update schedule (--scheduler cosine); None for the epoch-level plateau
    ema: Any = None  # timm ModelEmaV3 of the unwrapped model (--ema_decay)
    mix: BatchMix | None = None  # MixUp/CutMix of training batches (--mixup_alpha/--cutmix_alpha)
    steps_per_epoch: int = 0  # optimizer steps per epoch and process
    split_sizes: dict[str, int] | None = None  # images per split (as trained: after --final_fit's merge)
    # Validation/test/export preprocessing (--eval_image_size); None: data_cfg.
    eval_data_cfg: DataConfig | None = None

    @property
    def inference_cfg(self) -> DataConfig:
        """Preprocessing for validation, test and the exported model."""
        return self.eval_data_cfg or self.data_cfg

    @property
    def streaming(self) -> bool:
        return isinstance(self.train_loader, StreamingLoader)

    @property
    def train_transform(self):
        if self.streaming:
            return self.train_loader.transform
        return get_transform(self.datasets["train"])

    def resume_loader(self, accelerator, batches: int):
        """The training loader continuing after the epoch's first ``batches`` (a resumed run)."""
        if not batches:
            return self.train_loader
        if self.streaming:
            return self.train_loader.skip_first(batches)
        return accelerator.skip_first_batches(self.train_loader, batches)

    def test_paths(self, sample_ids) -> list[str]:
        """Paths of test images by ``sample_id`` (as gathered by an evaluation)."""
        if self.streaming:
            return stream_paths(self.data.dataset["test"], sample_ids)
        return paths_of(self.data.dataset["test"], sample_ids)

    def resolved(self, accelerator, args: TrainArguments) -> dict[str, Any]:
        """What the options resolved to (recorded in the run config and sent to the tracker)."""
        return {
            "weights": self.weights.describe(),
            "data_config": self.data_cfg.to_dict(),
            "eval_data_config": self.inference_cfg.to_dict(),
            "num_classes": self.data.num_classes,
            "class_names": self.data.class_names,
            "global_batch_size": args.batch_size * accelerator.num_processes * args.grad_accum_steps,
            "data_workers": self.workers,
            "steps_per_epoch": self.steps_per_epoch,
            "train_images": self.split_sizes["train"],
            "split_sizes": dict(self.split_sizes),
            "streaming": self.streaming,
            "base_model": self.base_model(accelerator),
        }

    def base_model(self, accelerator) -> str | None:
        """Hub id of the starting weights when they came from the Hub (for the model card)."""
        if self.weights.kind != "hub":
            return None
        loc = self.weights.location or ""
        if loc.startswith("hf-hub:"):
            return loc.removeprefix("hf-hub:")
        return accelerator.unwrap_model(self.model).pretrained_cfg.get("hf_hub_id")


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


def build_training(
    accelerator,
    data_args: DataArguments,
    model_args: ModelArguments,
    args: TrainArguments,
    need_validation: bool = True,
) -> TrainingPieces:
    """Load data, create the model and optimizer, build loaders and prepare them with ``accelerator``.

    The main process loads (and, for the synthetic set, generates) the data first; the others then
    read the caches it wrote. ``need_validation=False`` lets a speed benchmark, which never validates,
    run without a validation split; training refuses an empty one (unless ``--final_fit``).
    """
    with accelerator.main_process_first():
        data = load_streaming(data_args) if data_args.streaming else load_skin_dataset(data_args)
    main_print(accelerator, data.report.summary())
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # fixed input sizes: cuDNN picks the fastest convolution kernels
        )
    model, weights = create_model(model_args, data.num_classes)
    frozen = freeze_groups(model, model_args.freeze_groups)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    main_print(
        accelerator,
        f"model {model_args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
        + (f" ({n_frozen / 1e6:.2f}M in {model_args.freeze_groups} frozen groups)" if frozen else "")
        + f", weights: {weights.describe()}",
    )
    data_cfg = resolve_data_config(
        model, data_args.image_size, data_args.resize_size, data_args.mean, data_args.std
    )
    eval_cfg = data_cfg.at_size(data_args.eval_image_size) if data_args.eval_image_size else data_cfg
    if eval_cfg != data_cfg:
        main_print(
            accelerator, f"validation, test and export at {eval_cfg.image_size} px (--eval_image_size)"
        )
    if model_args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    workers = default_num_workers(data_args.num_workers, accelerator.num_processes)
    eval_bs = args.eval_batch_size or 2 * args.batch_size
    optimizer = build_optimizer(
        model,
        args.optimizer,
        args.lr,
        args.weight_decay,
        args.momentum,
        fused=accelerator.device.type == "cuda",
        layer_decay=args.layer_decay,
    )
    if data_args.streaming:
        return _build_streaming(
            accelerator,
            data,
            model,
            weights,
            data_cfg,
            optimizer,
            workers,
            eval_bs,
            data_args,
            model_args,
            args,
            eval_cfg,
        )
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
    loaders = (
        build_dataloader(ds["train"], args.batch_size, train=True, sampler=sampler, **kw),
        build_dataloader(ds["validation"], eval_bs, train=False, **kw),
        build_dataloader(ds["test"], eval_bs, train=False, **kw),
    )
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(model, optimizer, *loaders)
    return _finish(
        accelerator, data, source, ds, model, weights, data_cfg, optimizer,
        (train_loader, val_loader, test_loader), workers, train_labels, model_args, args,
        {k: len(v) for k, v in ds.items()}, eval_cfg,
    )  # fmt: skip


def _build_streaming(
    accelerator, data, model, weights, data_cfg, optimizer, workers, eval_bs, data_args, model_args, args,
    eval_cfg,
):  # fmt: skip
    """``build_training`` for ``--streaming``: one :class:`StreamingLoader` per split, this rank's share.

    The loaders do not go through ``accelerator.prepare``: a prepared iterable would have every rank
    read (and decode) every batch, or rank 0 read all and send them; each rank reads its own shards here.
    """
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
    common = dict(
        workers=workers,
        prefetch=data_args.prefetch_factor,
        device=accelerator.device,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )

    def loader(split: str, train: bool, bs: int) -> StreamingLoader:
        t = ImageTransform(
            data_cfg if train else eval_cfg, train=train, seed=args.seed, fast_decode=data_args.fast_decode,
            augment=aug if train else None, skip_log=skip_log,
        )  # fmt: skip
        return StreamingLoader(
            streams[split], t, bs, sizes[split], train=train, seed=args.seed,
            shuffle_buffer=data_args.shuffle_buffer, **common,
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
    model, optimizer = accelerator.prepare(model, optimizer)
    return _finish(
        accelerator, data, data.dataset, streams, model, weights, data_cfg, optimizer, loaders, workers,
        train_labels, model_args, args, sizes, eval_cfg,
    )  # fmt: skip


def _finish(
    accelerator, data, source, ds, model, weights, data_cfg, optimizer, loaders, workers, train_labels,
    model_args, args, sizes, eval_cfg,
) -> TrainingPieces:  # fmt: skip
    train_loader, val_loader, test_loader = loaders
    steps = (
        len(train_loader)
        if args.max_steps_per_epoch is None
        else min(len(train_loader), args.max_steps_per_epoch)
    )
    steps_per_epoch = max(1, steps // args.grad_accum_steps)
    lr_scheduler = None
    if args.scheduler == "cosine":
        lr_scheduler = build_cosine_scheduler(
            optimizer, args.epochs, steps_per_epoch, args.warmup_epochs, args.min_lr
        )
    ema = None
    if args.ema_decay is not None:
        from timm.utils import ModelEmaV3

        # Of the unwrapped model (no DDP wrapper, no compiled graph), on its device; decay warmed up
        # over the first steps so that short runs average recent weights, not the initial ones.
        ema = ModelEmaV3(
            accelerator.unwrap_model(model, keep_torch_compile=False), decay=args.ema_decay, use_warmup=True
        )
    class_weights = None
    if args.class_weighting == "balanced":
        class_weights = balanced_class_weights(train_labels, data.num_classes).to(accelerator.device)
    mix = None
    if args.mixup_alpha > 0 or args.cutmix_alpha > 0:
        mix = BatchMix(
            data.num_classes, args.mixup_alpha, args.cutmix_alpha, args.mix_prob, args.mix_switch_prob,
            seed=args.seed, process=accelerator.process_index,
        )  # fmt: skip
    return TrainingPieces(
        data=data,
        source=source,
        datasets=ds,
        model=model,
        weights=weights,
        data_cfg=data_cfg,
        optimizer=optimizer,
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        normalizer=BatchNormalizer(data_cfg, accelerator.device, channels_last=model_args.channels_last),
        loss_fn=torch.nn.CrossEntropyLoss(weight=class_weights, label_smoothing=args.label_smoothing),
        workers=workers,
        lr_scheduler=lr_scheduler,
        ema=ema,
        mix=mix,
        steps_per_epoch=steps_per_epoch,
        split_sizes=sizes,
        eval_data_cfg=eval_cfg,
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
