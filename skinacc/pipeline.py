"""Build every piece a training run needs, once, for the training recipe, the profiler and benchmarks.

Keeping this in one place means ``recipes/profile_training.py`` and the end-to-end throughput benchmark measure
exactly the pipeline that ``recipes/train.py`` runs (same data, transforms, loaders, model, optimizer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from skinacc.config import DataArguments, ModelArguments, TrainArguments
from skinacc.data import (
    BatchNormalizer,
    DataConfig,
    SkinData,
    build_dataloader,
    default_num_workers,
    get_transform,
    load_skin_dataset,
    preresize,
    resolve_data_config,
    set_transforms,
)
from skinacc.engine import build_optimizer
from skinacc.models import WeightSource, create_model

__all__ = ["TrainingPieces", "build_training", "loader_kwargs"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingPieces:
    """Everything prepared for a run (model, optimizer and loaders already through ``accelerator.prepare``)."""

    data: SkinData
    source: Any  # DatasetDict actually read (the pre-resized cache with --preresize), before transforms
    datasets: Any  # ``source`` with transforms set
    model: torch.nn.Module
    weights: WeightSource
    data_cfg: DataConfig
    optimizer: torch.optim.Optimizer
    train_loader: Any
    val_loader: Any
    test_loader: Any
    normalizer: BatchNormalizer
    loss_fn: torch.nn.Module
    workers: int

    @property
    def train_transform(self):
        return get_transform(self.datasets["train"])


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
    accelerator, data_args: DataArguments, model_args: ModelArguments, args: TrainArguments
) -> TrainingPieces:
    """Load data, create the model and optimizer, build loaders and prepare them with ``accelerator``.

    The main process loads (and, for the synthetic set, generates) the data first; the others then
    read the caches it wrote.
    """
    with accelerator.main_process_first():
        data = load_skin_dataset(data_args)
    accelerator.print(data.report.summary())
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # fixed input sizes: cuDNN picks the fastest convolution kernels
        )
    model, weights = create_model(model_args, data.num_classes)
    accelerator.print(
        f"model {model_args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, weights: {weights.describe()}"
    )
    data_cfg = resolve_data_config(
        model, data_args.image_size, data_args.resize_size, data_args.mean, data_args.std
    )
    if model_args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    workers = default_num_workers(data_args.num_workers, accelerator.num_processes)
    source = data.dataset
    if data_args.preresize:
        with accelerator.main_process_first():  # built once by the main process, then read from cache
            source = preresize(source, data_cfg.resize_size, data_args.cache_dir, num_proc=max(1, workers))
    ds = set_transforms(
        source, data_cfg, seed=args.seed, hflip=data_args.hflip, fast_decode=data_args.fast_decode
    )
    kw = loader_kwargs(data_args, workers, args.seed)
    eval_bs = args.eval_batch_size or 2 * args.batch_size
    loaders = (
        build_dataloader(ds["train"], args.batch_size, train=True, **kw),
        build_dataloader(ds["validation"], eval_bs, train=False, **kw),
        build_dataloader(ds["test"], eval_bs, train=False, **kw),
    )
    optimizer = build_optimizer(
        model,
        args.optimizer,
        args.lr,
        args.weight_decay,
        args.momentum,
        fused=accelerator.device.type == "cuda",
    )
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(model, optimizer, *loaders)
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
        loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        workers=workers,
    )
