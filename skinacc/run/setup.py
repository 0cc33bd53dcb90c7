"""Everything a training run is made of, built once: data plan, model, optimizer, schedule, EMA, loss and
batch mixing, prepared with ``accelerator``.

The training run, the profiler and the throughput benchmark all build their pieces here and train with
:meth:`TrainingSetup.train_epoch`, so the profiler and the benchmark measure exactly what training runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from skinacc.config import DataArguments, ModelArguments, TrainArguments
from skinacc.data import (
    BatchNormalizer,
    DataConfig,
    balanced_class_weights,
    default_num_workers,
    load_skin_dataset,
    resolve_data_config,
)
from skinacc.data.mixing import BatchMix
from skinacc.data.plan import DataPlan, build_data_plan
from skinacc.data.streaming import load_streaming
from skinacc.engine import TrainState, train_one_epoch
from skinacc.models import WeightSource, create_model, freeze_groups
from skinacc.optim import build_cosine_scheduler, build_optimizer
from skinacc.predictor import Predictor
from skinacc.tracking import main_print

__all__ = ["TrainingSetup", "build_training"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """The prepared pieces of a run (model, optimizer and map-style loaders through ``accelerator.prepare``).

    Attributes:
        plan: The data (:class:`skinacc.data.plan.DataPlan`).
        model: The prepared model; ``ema`` (timm ``ModelEmaV3``, ``--ema_decay``) averages it.
        data_cfg, eval_cfg: Training preprocessing, and validation/test/export preprocessing
            (``--eval_image_size``; the same otherwise).
        lr_scheduler: The per-update cosine (``--scheduler cosine``), or None (the epoch-level plateau).
        steps_per_epoch: Optimizer steps per epoch and process.
    """

    accelerator: Any
    args: TrainArguments
    model_args: ModelArguments
    plan: DataPlan
    model: torch.nn.Module
    weights: WeightSource
    data_cfg: DataConfig
    eval_cfg: DataConfig
    optimizer: torch.optim.Optimizer
    normalizer: BatchNormalizer
    loss_fn: torch.nn.Module
    lr_scheduler: Any = None
    ema: Any = None
    mix: BatchMix | None = None
    steps_per_epoch: int = 0

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated, kept as best and exported: the EMA's average when there is one."""
        return self.ema.module if self.ema else self.model

    def predictor(self, model: torch.nn.Module | None = None, tta: str = "none") -> Predictor:
        """The one inference path over ``model`` (default :attr:`eval_model`), under the launch's precision."""
        return Predictor(
            model if model is not None else self.eval_model,
            self.eval_cfg,
            tta=tta,
            device=self.accelerator.device,
            channels_last=self.model_args.channels_last,
            autocast=self.accelerator.autocast,
        )

    def train_epoch(
        self,
        state: TrainState,
        *,
        loader=None,
        max_batches: int | None = None,
        on_step: Callable[[TrainState, torch.Tensor], None] | None = None,
        desc: str | None = None,
        stats_after: int = 0,
    ) -> dict[str, float]:
        """Train the epoch ``state`` is in (or the rest of it) with every piece of the run.

        Args:
            state: Progress; a resumed epoch continues after ``state.batch_in_epoch`` batches.
            loader: Batches to train on (default: the plan's for this epoch, resumed where ``state`` is).
            max_batches: Stop after this many batches of the epoch (default ``--max_steps_per_epoch``).
            on_step: Called after every optimizer step (checkpoints, stop requests, step logging).
            stats_after: Batches left out of the speed figures (benchmarks).

        Returns:
            :func:`skinacc.engine.train_one_epoch`'s figures.
        """
        if loader is None:
            loader = self.plan.epoch_loader(self.accelerator, state.epoch, state.batch_in_epoch)
        return train_one_epoch(
            self.accelerator,
            self.model,
            loader,
            self.optimizer,
            self.loss_fn,
            self.normalizer,
            state,
            max_batches=self.args.max_steps_per_epoch if max_batches is None else max_batches,
            max_grad_norm=self.args.max_grad_norm,
            on_step=on_step,
            desc=desc or f"epoch {state.epoch + 1}",
            stats_after=stats_after,
            lr_scheduler=self.lr_scheduler,
            ema=self.ema,
            mix=self.mix,
        )

    def resolved(self) -> dict[str, Any]:
        """What the options resolved to (recorded in the run config and sent to the tracker)."""
        args, acc = self.args, self.accelerator
        return {
            "weights": self.weights.describe(),
            "data_config": self.data_cfg.to_dict(),
            "eval_data_config": self.eval_cfg.to_dict(),
            "num_classes": self.plan.data.num_classes,
            "class_names": self.plan.data.class_names,
            "global_batch_size": args.batch_size * acc.num_processes * args.grad_accum_steps,
            "data_workers": self.plan.workers,
            "steps_per_epoch": self.steps_per_epoch,
            "train_images": self.plan.sizes["train"],
            "split_sizes": dict(self.plan.sizes),
            "streaming": self.plan.streaming,
            "base_model": self.base_model(),
        }

    def base_model(self) -> str | None:
        """Hub id of the starting weights when they came from the Hub (for the model card)."""
        if self.weights.kind != "hub":
            return None
        loc = self.weights.location or ""
        if loc.startswith("hf-hub:"):
            return loc.removeprefix("hf-hub:")
        return self.accelerator.unwrap_model(self.model).pretrained_cfg.get("hf_hub_id")


def build_training(
    accelerator,
    data_args: DataArguments,
    model_args: ModelArguments,
    args: TrainArguments,
    need_validation: bool = True,
) -> TrainingSetup:
    """Load data, create the model and optimizer, build the data plan and prepare them with ``accelerator``.

    The main process loads (and, for the synthetic set, generates) the data first; the others then
    read the caches it wrote. ``need_validation=False`` lets a speed benchmark, which never validates,
    run without a validation split; training refuses an empty one (unless ``--final_fit``).
    """
    with accelerator.main_process_first():
        data = load_streaming(data_args) if data_args.streaming else load_skin_dataset(data_args)
    main_print(accelerator, data.report.summary())
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: cuDNN picks the fastest kernels
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
    optimizer = build_optimizer(
        model,
        args.optimizer,
        args.lr,
        args.weight_decay,
        args.momentum,
        fused=accelerator.device.type == "cuda",
        layer_decay=args.layer_decay,
    )
    plan = build_data_plan(accelerator, data, data_args, args, data_cfg, eval_cfg, workers, need_validation)
    model, optimizer = accelerator.prepare(model, optimizer)
    steps = len(plan.train_loader)
    if args.max_steps_per_epoch is not None:
        steps = min(steps, args.max_steps_per_epoch)
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
        class_weights = balanced_class_weights(plan.train_labels, data.num_classes).to(accelerator.device)
    mix = None
    if args.mixup_alpha > 0 or args.cutmix_alpha > 0:
        mix = BatchMix(
            data.num_classes, args.mixup_alpha, args.cutmix_alpha, args.mix_prob, args.mix_switch_prob,
            seed=args.seed, process=accelerator.process_index,
        )  # fmt: skip
    return TrainingSetup(
        accelerator=accelerator,
        args=args,
        model_args=model_args,
        plan=plan,
        model=model,
        weights=weights,
        data_cfg=data_cfg,
        eval_cfg=eval_cfg,
        optimizer=optimizer,
        normalizer=BatchNormalizer(data_cfg, accelerator.device, channels_last=model_args.channels_last),
        loss_fn=torch.nn.CrossEntropyLoss(weight=class_weights, label_smoothing=args.label_smoothing),
        lr_scheduler=lr_scheduler,
        ema=ema,
        mix=mix,
        steps_per_epoch=steps_per_epoch,
    )
