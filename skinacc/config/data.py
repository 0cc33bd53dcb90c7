"""Where images come from, how they are split and how they are loaded: :class:`DataArguments`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from skinacc.config.fields import option

__all__ = ["DataArguments", "default_cache_dir"]


def default_cache_dir() -> str:
    """Where skinacc keeps generated data and verification caches (``$SKINACC_CACHE`` overrides)."""
    return os.environ.get("SKINACC_CACHE", str(Path.home() / ".cache" / "skinacc"))


@dataclass
class DataArguments:
    """Where images come from, how they are split and how they are loaded."""

    data_dir: str | None = option(
        "Local image folder: <root>/<Class>/*.jpg (Kaggle 'Massive Skin Disease Balanced Dataset' layout, "
        "also nested as balanced_dataset/balanced_dataset/), or with predefined train/ test/ [val/] folders.",
        default=None,
    )
    dataset_name: str | None = option(
        "Hugging Face dataset: a Hub id (online) or a folder written by `DatasetDict.save_to_disk`.",
        default=None,
    )
    dataset_config: str | None = option("Hub dataset configuration name.", default=None)
    image_column: str = option("Image column of a Hub dataset.", default="image")
    label_column: str = option("Label column of a Hub dataset.", default="label")
    group_column: str | None = option(
        "Column naming a group (e.g. lesion id) that must never span two splits. For an image folder it "
        "is read from --metadata_file.",
        default=None,
    )
    metadata_file: str | None = option(
        "CSV beside an image folder with a 'path' column (relative to data_dir) and extra columns such as "
        "the group column. Defaults to <data_dir>/labels.csv when --group_column is set.",
        default=None,
    )
    dedupe_groups: bool = option(
        "Find exact and near-duplicate images (skinacc.audit: flips, rotations, resizes, crops, re-encodes, "
        "brightness/contrast changes) before splitting and keep each duplicate group in one split, merged "
        "with --group_column when both are given: no copy of an image crosses train/validation/test. "
        "Needs pip install 'skinacc[audit]'; results are cached in --cache_dir.",
        default=False,
    )
    synthetic_num_classes: int = option("Embedded synthetic set: number of classes.", default=6)
    synthetic_images_per_class: int = option("Embedded synthetic set: images per class.", default=80)
    synthetic_image_size: int = option("Embedded synthetic set: image side in pixels.", default=160)
    synthetic_difficulty: float = option(
        "Embedded synthetic set: 0 (trivially separable) to 1 (heavily overlapping classes).", default=0.5
    )
    synthetic_seed: int = option("Embedded synthetic set: generation seed.", default=0)
    cache_dir: str = option(
        "Cache for generated data and image-verification results.",
        default_factory=default_cache_dir,
        resume=True,
        setup=False,
    )
    test_size: float = option("Fraction of all images held out for test (seed: 0.3).", default=0.3)
    val_size: float = option(
        "Fraction of the training part held out for validation (seed: 0.1).", default=0.1
    )
    split_seed: int = option("Seed of the stratified (and group-aware) split.", default=42)
    cv_folds: int = option(
        "K-fold cross-validation (0: off): after the --test_size test split (0: none), the rest is cut into "
        "K folds stratified by class and grouped by --group_column (and --dedupe_groups), seeded by "
        "--split_seed; each fold is an ordinary run folder <output_dir>/fold_<k> validating on its held-out "
        "fold, and the out-of-fold predictions cover every image outside the test split (--val_size does "
        "not apply).",
        default=0,
    )
    cv_fold: int | None = option(
        "The one fold this run trains (0 to --cv_folds - 1): its held-out fold is the validation split. "
        "Default with --cv_folds: every fold in turn, then the cross-validation report.",
        default=None,
    )
    verify_images: Literal["full", "header", "none"] = option(
        "Check images before training: 'full' decodes each one (cached), 'header' only opens it, 'none' "
        "trusts the files. Unreadable images are skipped and listed in data_report.json (so are those found only while training).",
        default="full",
        resume=True,
    )
    image_size: int | None = option(
        "Crop size fed to the model (default: the model's pretrained_cfg).", default=None
    )
    resize_size: int | None = option(
        "Shorter-side resize before cropping (default: image_size / crop_pct, i.e. 256 for 224).",
        default=None,
    )
    eval_image_size: int | None = option(
        "Input size for validation, test and the exported model (default: image_size), the crop ratio "
        "kept. Random-resized crops show objects larger than a whole-image view at the same size, so a "
        "CNN often scores better evaluated a little above its training size (FixRes, Touvron et al. 2019).",
        default=None,
    )
    mean: list[float] | None = option(
        "Normalisation mean (default: the model's pretrained_cfg).", default=None
    )
    std: list[float] | None = option("Normalisation std (default: the model's pretrained_cfg).", default=None)
    augment: Literal["seed", "dermoscopy"] = option(
        "Training augmentation preset. 'seed': the seed's resize, random crop and horizontal flip. "
        "'dermoscopy': random-resized crop, the 8 flips/90-degree rotations (a dermoscopic image has no "
        "'up'), colour jitter, TrivialAugment and random erasing (torchvision v2, keyed per sample).",
        default="seed",
        card="augmentation",
    )
    hflip: float = option("Probability of a horizontal flip in training (--augment seed).", default=0.5)
    crop_scale_min: float | None = option(
        "Smallest image area a random-resized crop keeps (--augment dermoscopy; default 0.35).", default=None
    )
    color_jitter: float | None = option(
        "Brightness/contrast/saturation jitter strength, hue a tenth of it (--augment dermoscopy; "
        "default 0.2; 0 turns it off).",
        default=None,
    )
    auto_augment: Literal["none", "trivial", "rand"] | None = option(
        "Automatic augmentation policy: torchvision's TrivialAugmentWide ('trivial'), RandAugment(2, 9) "
        "('rand') or 'none' (--augment dermoscopy; default trivial).",
        default=None,
    )
    random_erasing: float | None = option(
        "Probability of erasing a random rectangle with the mean colour (--augment dermoscopy; default 0.25).",
        default=None,
    )
    fast_decode: bool = option(
        "Decode JPEGs at reduced size with libjpeg DCT scaling when the file is far larger than resize_size.",
        default=True,
    )
    preresize: bool = option(
        "Decode and shrink every image to the resize size once (an Arrow cache in --cache_dir), so later "
        "epochs decode small JPEGs: several times faster when originals are far larger than the model input.",
        default=False,
    )
    num_workers: int | None = option(
        "DataLoader worker processes per training process (default: the node's cores shared among the "
        "processes, one left for each main process).",
        default=None,
        resume=True,
        setup=False,
    )
    pin_memory: bool = option(
        "Pin host memory for faster host-to-GPU copies (ignored on CPU).", default=True, resume=True
    )
    persistent_workers: bool = option(
        "Keep DataLoader workers alive between epochs.", default=True, resume=True
    )
    prefetch_factor: int = option("Batches each worker loads ahead.", default=4, resume=True)
    streaming: bool = option(
        "Stream --dataset_name (Parquet shards from recipes/prepare_shards.py, local or on the Hub) instead "
        "of reading it whole: nothing is copied to local disk first; each rank reads its share of the "
        "shards; resume stays exact.",
        default=False,
    )
    shuffle_buffer: int = option(
        "--streaming: rows the training stream's shuffle buffer holds (raw JPEG bytes; about 30 KB each for "
        "256 px shards). The shards' own order is shuffled too, every epoch.",
        default=2048,
    )
    max_train_samples: int | None = option("Cap the training split (quick runs and debugging).", default=None)
    max_eval_samples: int | None = option("Cap the validation and test splits.", default=None)

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.data_dir and self.dataset_name:
            p.append(
                f"--data_dir={self.data_dir!r} and --dataset_name={self.dataset_name!r}: give one data source, not both"
            )
        if not 0.0 <= self.test_size < 1.0:
            p.append(f"--test_size={self.test_size}: must be in [0, 1) (0 with --final_fit or --cv_folds)")
        if self.cv_folds == 1 or self.cv_folds < 0:
            p.append(f"--cv_folds={self.cv_folds}: must be 0 (off) or at least 2")
        if self.cv_fold is not None and not 0 <= self.cv_fold < max(self.cv_folds, 1):
            p.append(f"--cv_fold={self.cv_fold}: must be in [0, --cv_folds={self.cv_folds})")
        if self.cv_folds and self.streaming:
            p.append(
                "--cv_folds re-cuts the images into folds, which a stream of prepared shards cannot: train map-style"
            )
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
