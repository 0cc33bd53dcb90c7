"""On-the-fly transforms, sized and normalised from the model's timm ``pretrained_cfg``.

The seed's pipeline: train = resize 256 -> random crop 224 -> horizontal flip -> normalise;
eval = resize 256 -> centre crop 224 -> normalise. skinacc keeps those semantics and splits the work
where it is cheapest: workers decode (at reduced DCT scale for large JPEGs), resize, crop and flip, and
hand over ``uint8`` tensors; normalisation to float happens on the accelerator, batched
(:class:`BatchNormalizer`), which moves a quarter of the bytes and none of the float maths on the CPU.

Augmentation randomness is keyed on ``(seed, epoch, sample_id)``, not on worker RNG state, so a run
resumed mid-epoch sees exactly the crops and flips an uninterrupted run would have seen, whatever the
number of workers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinacc.data.images import load_rgb

__all__ = [
    "BatchNormalizer",
    "DataConfig",
    "ImageTransform",
    "preresize",
    "resolve_data_config",
    "set_transforms",
]

logger = logging.getLogger(__name__)

SEED_CROP_PCT = 0.875

_INTERP = {
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
) -> DataConfig:
    """Take input size, normalisation and interpolation from the model's timm ``pretrained_cfg``.

    Overrides win. The resize before cropping defaults to ``image_size / 0.875`` (the seed's 256 for a
    224 crop), whatever crop ratio the model was evaluated with.
    """
    cfg: dict[str, Any] = {}
    if model is not None:
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(model)
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    # The seed resized to 256 for a 224 crop; keep that ratio for every model and size unless asked.
    resize_size = resize_size or int(math.floor(size / SEED_CROP_PCT))
    interp = interpolation or cfg.get("interpolation", "bilinear")
    if interp not in _INTERP:
        interp = "bilinear"
    return DataConfig(
        image_size=size,
        resize_size=resize_size,
        mean=tuple(mean or cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(std or cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interp,
        crop_pct=size / resize_size,
    )


class ImageTransform:
    """A ``datasets`` batch transform: image column -> ``pixel_values`` uint8 tensors (C, H, W).

    Args:
        cfg: Sizes and interpolation.
        train: Random crop and flip when True, centre crop when False.
        seed: Base of the per-sample augmentation key.
        hflip: Flip probability in training.
        fast_decode: Use reduced-size JPEG decoding when the file is at least twice the resize target.
    """

    def __init__(
        self, cfg: DataConfig, train: bool, seed: int = 0, hflip: float = 0.5, fast_decode: bool = True
    ):
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.hflip = hflip
        self.fast_decode = fast_decode
        self._filter = _INTERP[cfg.interpolation]
        # Shared with DataLoader workers (also persistent ones): set_epoch in the main process is seen
        # by every worker at its next batch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def _one(self, src: Any, sample_id: int) -> torch.Tensor:
        cfg = self.cfg
        img = load_rgb(src, cfg.resize_size if self.fast_decode else None)
        w, h = img.size
        scale = cfg.resize_size / min(w, h)
        nw, nh = max(cfg.image_size, round(w * scale)), max(cfg.image_size, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), self._filter)
        s = cfg.image_size
        if self.train:
            rng = np.random.default_rng((self.seed, int(self._epoch[0]), int(sample_id)))
            left, top = int(rng.integers(0, nw - s + 1)), int(rng.integers(0, nh - s + 1))
            flip = rng.random() < self.hflip
        else:
            left, top, flip = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0)), False
        arr = np.asarray(img.crop((left, top, left + s, top + s)))
        if flip:
            arr = arr[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images = batch["image"]
        ids = batch.get("sample_id") or list(range(len(images)))
        pixels: list[torch.Tensor | None] = []
        for src, sid in zip(images, ids):
            try:
                pixels.append(self._one(src, sid))
            except (OSError, ValueError, SyntaxError) as e:  # a file changed or broke after verification
                path = src.get("path") if isinstance(src, dict) else src
                logger.warning("skipping unreadable image %s: %s", path, e)
                pixels.append(None)
        out = {"pixel_values": pixels, "labels": batch["label"], "sample_id": list(ids)}
        return out


def _preresize_batch(batch: dict[str, list], size: int, quality: int) -> dict[str, list]:
    """Decode (at reduced DCT scale), shrink the shorter side to ``size`` and re-encode as JPEG."""
    import io

    out = []
    for src in batch["image"]:
        try:
            img = load_rgb(src, size)
        except (OSError, ValueError, SyntaxError):  # keep the row; the transform reports it later
            out.append(src)
            continue
        scale = size / min(img.size)
        if scale < 1:
            img = img.resize(
                (max(size, round(img.size[0] * scale)), max(size, round(img.size[1] * scale))), Image.BILINEAR
            )
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        out.append({"bytes": buf.getvalue(), "path": None})
    return {"image": out}


def preresize(dataset_dict, size: int, cache_dir: str, num_proc: int = 1, quality: int = 95):
    """Pay decode-and-resize once: store every image shrunk to ``size`` (shorter side) as a JPEG in an
    Arrow cache, so each later epoch decodes a small file instead of the original.

    Worth it when originals are far larger than what the model sees (the Kaggle set's photographs vs a
    256 px resize): in ``benchmarks`` it reads 1200 px JPEGs several times faster than decoding them each
    epoch. The cache file is keyed on the image list and the size and reused by later runs.

    Args:
        dataset_dict: Splits from :func:`skinacc.data.load_skin_dataset`.
        size: Shorter side to keep (the transform's ``resize_size``).
        cache_dir: Folder for the Arrow files.
        num_proc: Processes for the one-off pass.
        quality: JPEG quality of the stored images.

    Returns:
        A ``DatasetDict`` with the same columns, images replaced by their small copies.
    """
    import hashlib
    from pathlib import Path

    import datasets

    out = {}
    for split, ds in dataset_dict.items():
        raw = ds.cast_column("image", datasets.Image(decode=False))
        key = hashlib.sha1(
            f"{size}|{quality}|{split}|".encode() + "\n".join(map(str, ds["path"])).encode()
        ).hexdigest()[:16]
        target = Path(cache_dir).expanduser() / "preresized" / f"{key}.arrow"
        target.parent.mkdir(parents=True, exist_ok=True)
        small = raw.map(
            _preresize_batch,
            batched=True,
            batch_size=32,
            fn_kwargs={"size": size, "quality": quality},
            num_proc=max(1, num_proc) if len(raw) >= 64 else None,
            features=raw.features,
            cache_file_name=str(target),
            load_from_cache_file=True,
            desc=f"pre-resize {split}",
        )
        out[split] = small.cast_column("image", datasets.Image())
    return datasets.DatasetDict(out)


def set_transforms(
    dataset_dict, cfg: DataConfig, seed: int = 0, hflip: float = 0.5, fast_decode: bool = True
):
    """Attach on-the-fly transforms: random augmentation on ``train``, deterministic on the others.

    The image column is read undecoded (``Image(decode=False)``) so that :func:`load_rgb` can decode at
    reduced size; nothing is decoded until a batch is requested.

    Returns:
        A new ``DatasetDict`` with transforms set; the input is left unchanged.
    """
    import datasets

    out = {}
    for split, ds in dataset_dict.items():
        raw = ds.cast_column("image", datasets.Image(decode=False))
        out[split] = raw.with_transform(
            ImageTransform(cfg, train=(split == "train"), seed=seed, hflip=hflip, fast_decode=fast_decode)
        )
    return datasets.DatasetDict(out)


class BatchNormalizer:
    """Turn a uint8 batch into normalised float on the device, in the layout the model wants.

    Args:
        cfg: Mean and std.
        device: Target device.
        channels_last: Return a channels-last tensor.
        dtype: Float dtype of the result (float32; autocast handles half precision downstream).
    """

    def __init__(
        self,
        cfg: DataConfig,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        dtype=torch.float32,
    ):
        self.device = torch.device(device)
        shape = (1, 3, 1, 1)
        # (x - mean) / std as x * scale + shift, in place on a fresh float copy: one pass, no temporaries.
        self.scale = torch.tensor([1.0 / (s * 255) for s in cfg.std], device=self.device, dtype=dtype).view(
            shape
        )
        self.shift = torch.tensor(
            [-m / s for m, s in zip(cfg.mean, cfg.std)], device=self.device, dtype=dtype
        ).view(shape)
        self.channels_last = channels_last
        self.dtype = dtype

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device, non_blocking=True)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty(x.shape, dtype=self.dtype, device=self.device).contiguous(memory_format=fmt)
        out.copy_(x)
        return out.mul_(self.scale).add_(self.shift)
