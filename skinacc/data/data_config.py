"""The one data config: what a model expects (input size, resize, normalisation, interpolation, from its
timm ``pretrained_cfg`` with overrides winning) and what training augmentation does (a preset and its
knobs). Transforms, loaders, the predictor and the exported model's ``config.json`` all read these."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from PIL import Image

__all__ = [
    "AUGMENT_PRESETS",
    "INTERPOLATIONS",
    "AugmentConfig",
    "DataConfig",
    "resolve_augment",
    "resolve_data_config",
]

SEED_CROP_PCT = 0.875

INTERPOLATIONS = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


@dataclass(frozen=True)
class DataConfig:
    """Sizes and normalisation the model expects.

    Attributes:
        image_size: Side of the square crop fed to the model.
        resize_size: Shorter side after resizing, before cropping.
        mean: Per-channel mean (0-1 scale).
        std: Per-channel std (0-1 scale).
        interpolation: Resize filter name.
        crop_pct: ``image_size / resize_size``, as timm records it.
    """

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def at_size(self, image_size: int, resize_size: int | None = None) -> DataConfig:
        """The same preprocessing at another input size; the crop ratio is kept unless ``resize_size`` is given."""
        resize = resize_size or round(image_size / self.crop_pct)
        return replace(self, image_size=image_size, resize_size=resize, crop_pct=image_size / resize)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def resolve_data_config(
    model: torch.nn.Module | None = None,
    image_size: int | None = None,
    resize_size: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> DataConfig:
    """The one way to build a data config: input size, normalisation and interpolation from the model's
    timm ``pretrained_cfg``, overrides winning (a different size for the same model: :meth:`DataConfig.at_size`).

    The resize before cropping is ``resize_size`` when given, else ``image_size / crop_pct``, and with no
    ``crop_pct`` ``floor(image_size / 0.875)``: the seed's 256 for a 224 crop, whatever ratio the
    ImageNet weights were evaluated with (what training uses). A trained model's own ratio is passed as
    ``crop_pct`` when it is loaded (``skinacc.artifact.load_model``).
    """
    cfg: dict[str, Any] = {}
    if model is not None:
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(model)
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    if resize_size is None:
        # The seed resized to 256 for a 224 crop; that ratio for every model and size unless asked.
        resize_size = round(size / crop_pct) if crop_pct else int(math.floor(size / SEED_CROP_PCT))
    interp = interpolation or cfg.get("interpolation", "bilinear")
    if interp not in INTERPOLATIONS:
        interp = "bilinear"
    return DataConfig(
        image_size=size,
        resize_size=resize_size,
        mean=tuple(mean or cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(std or cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interp,
        crop_pct=crop_pct if crop_pct and resize_size == round(size / crop_pct) else size / resize_size,
    )


@dataclass(frozen=True)
class AugmentConfig:
    """What training augmentation does (see :data:`AUGMENT_PRESETS`).

    Attributes:
        preset: ``seed`` (resize, random crop, horizontal flip) or ``dermoscopy``.
        hflip: Horizontal-flip probability (``seed``).
        crop_scale_min: Smallest area share of the random-resized crop (``dermoscopy``).
        color_jitter: Brightness, contrast and saturation jitter; hue gets a tenth of it.
        auto_augment: ``none``, ``trivial`` (TrivialAugmentWide) or ``rand`` (RandAugment, 2 ops, magnitude 9).
        random_erasing: Probability of erasing one rectangle with the mean colour (zero after
            normalisation, as timm's ``const`` mode).
    """

    preset: str = "seed"
    hflip: float = 0.5
    crop_scale_min: float = 0.35
    color_jitter: float = 0.2
    auto_augment: str = "trivial"
    random_erasing: float = 0.25


#: Defaults of the ``dermoscopy`` knobs (``--crop_scale_min`` etc. override them one by one).
AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    "seed": {},
    "dermoscopy": {
        "crop_scale_min": 0.35,
        "color_jitter": 0.2,
        "auto_augment": "trivial",
        "random_erasing": 0.25,
    },
}


def resolve_augment(
    preset: str = "seed",
    hflip: float = 0.5,
    crop_scale_min: float | None = None,
    color_jitter: float | None = None,
    auto_augment: str | None = None,
    random_erasing: float | None = None,
) -> AugmentConfig:
    """The :class:`AugmentConfig` of a preset, with any knob given (not ``None``) overriding it."""
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"--augment={preset!r}: must be one of {sorted(AUGMENT_PRESETS)}")
    given = {
        "crop_scale_min": crop_scale_min,
        "color_jitter": color_jitter,
        "auto_augment": auto_augment,
        "random_erasing": random_erasing,
    }
    knobs = AUGMENT_PRESETS[preset] | {k: v for k, v in given.items() if v is not None}
    return AugmentConfig(preset=preset, hflip=hflip, **knobs)
