"""On-the-fly transforms, sized and normalised from the model's timm ``pretrained_cfg``.

The seed's pipeline: train = resize 256 -> random crop 224 -> horizontal flip -> normalise;
eval = resize 256 -> centre crop 224 -> normalise. skinacc keeps those semantics and splits the work
where it is cheapest: workers decode (at reduced DCT scale for large JPEGs), resize, crop and flip, and
hand over ``uint8`` tensors; normalisation to float happens on the accelerator, batched
(:class:`BatchNormalizer`), which moves a quarter of the bytes and none of the float maths on the CPU.

Two training augmentations (:class:`AugmentConfig`): ``seed`` is the seed's resize -> random crop ->
horizontal flip; ``dermoscopy`` is a random-resized crop, the 8 flips/90-degree rotations (a
dermoscopic image has no "up"), colour jitter, TrivialAugment or RandAugment and random erasing, built
from torchvision's v2 transforms. torchvision v2 rather than ``timm.data.create_transform``: every v2
transform draws from torch's RNG only (timm's RandAugment and crops draw from Python's ``random``),
which is what lets one seeded, forked generator key all of them.

Augmentation randomness is keyed on ``(seed, epoch, sample_id)``, not on worker RNG state, so a run
resumed mid-epoch sees exactly the crops and flips an uninterrupted run would have seen, whatever the
number of workers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinacc.data.data_config import (
    INTERPOLATIONS,
    AugmentConfig,
    DataConfig,
)
from skinacc.data.images import load_rgb

__all__ = [
    "BatchNormalizer",
    "ImageTransform",
    "preresize",
    "set_transforms",
]

logger = logging.getLogger(__name__)


def stream_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. seed, epoch, sample): independent streams."""
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> 1)


class _Dihedral:
    """One of the 8 symmetries of the square: a horizontal flip, then 0-3 quarter turns (torch RNG)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flip, turns = torch.randint(2, ()).item(), torch.randint(4, ()).item()
        if flip:
            x = x.flip(-1)
        return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def build_dermoscopy_augment(cfg: DataConfig, aug: AugmentConfig):
    """torchvision v2 pipeline, PIL image in, uint8 (C, S, S) tensor out; all randomness from torch's RNG."""
    from torchvision.transforms import InterpolationMode, v2

    interp = InterpolationMode(cfg.interpolation if cfg.interpolation != "box" else "bilinear")
    steps: list[Any] = [
        v2.RandomResizedCrop(
            cfg.image_size, scale=(aug.crop_scale_min, 1.0), interpolation=interp, antialias=True
        )
    ]
    if aug.color_jitter > 0:
        j = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(0.5, j / 10)))
    if aug.auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide(interpolation=interp))
    elif aug.auto_augment == "rand":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9, interpolation=interp))
    steps += [v2.PILToTensor(), _Dihedral()]
    if aug.random_erasing > 0:
        mean = [round(255 * m) for m in cfg.mean]
        steps.append(v2.RandomErasing(p=aug.random_erasing, value=mean))
    return v2.Compose(steps)


class ImageTransform:
    """A ``datasets`` batch transform: image column -> ``pixel_values`` uint8 tensors (C, H, W).

    Args:
        cfg: Sizes and interpolation.
        train: Augment (per :class:`AugmentConfig`) when True, resize and centre crop when False.
        seed: Base of the per-sample augmentation key.
        fast_decode: Use reduced-size JPEG decoding when the file is at least twice the resize target.
        augment: Training augmentation (default: the ``seed`` preset).
        skip_log: A JSON-lines file to which every image that fails to decode here is appended
            (``path``, ``reason``), from whichever worker or process: a run merges it into its
            ``data_report.json``, so no image is left out unreported.
    """

    def __init__(
        self,
        cfg: DataConfig,
        train: bool,
        seed: int = 0,
        fast_decode: bool = True,
        augment: AugmentConfig | None = None,
        skip_log: str | None = None,
    ):
        self.cfg = cfg
        self.train = train
        self.skip_log = skip_log
        self.seed = seed
        self.augment = augment or AugmentConfig()
        self.hflip = self.augment.hflip
        self.fast_decode = fast_decode
        self._filter = INTERPOLATIONS[cfg.interpolation]
        self._pipeline = (
            build_dermoscopy_augment(cfg, self.augment)
            if train and self.augment.preset == "dermoscopy"
            else None
        )
        # Shared with DataLoader workers (also persistent ones): set_epoch in the main process is seen
        # by every worker at its next batch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def _one(self, src: Any, sample_id: int) -> torch.Tensor:
        cfg = self.cfg
        img = load_rgb(src, cfg.resize_size if self.fast_decode else None)
        if self._pipeline is not None:
            # A private, keyed stream: the main process's RNG (dropout, model init) is left untouched
            # when loading runs in the main process (num_workers=0).
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stream_seed(self.seed, int(self._epoch[0]), int(sample_id)))
                return self._pipeline(img).contiguous()
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
        errors: list[str | None] = []
        for src, sid in zip(images, ids):
            try:
                pixels.append(self._one(src, sid))
                errors.append(None)
            # A file that changed or broke after verification, or was never verified (--verify_images
            # header/none): truncated data, a decompression bomb, garbage.
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                path = src.get("path") if isinstance(src, dict) else src
                reason = f"{type(e).__name__}: {e}"
                logger.warning("skipping unreadable image %s: %s", path, reason)
                pixels.append(None)
                errors.append(reason)
                self._log_skip(str(path), reason)
        return {"pixel_values": pixels, "labels": batch["label"], "sample_id": list(ids), "error": errors}

    def _log_skip(self, path: str, reason: str) -> None:
        if not self.skip_log:
            return
        import json

        os.makedirs(os.path.dirname(os.path.abspath(self.skip_log)), exist_ok=True)
        line = json.dumps({"path": path, "reason": reason}) + "\n"
        # One small O_APPEND write per line: lines from concurrent workers and ranks never interleave.
        fd = os.open(self.skip_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


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
    dataset_dict,
    cfg: DataConfig,
    seed: int = 0,
    fast_decode: bool = True,
    augment: AugmentConfig | None = None,
    skip_log: str | None = None,
    eval_cfg: DataConfig | None = None,
):
    """Attach on-the-fly transforms: ``augment`` (default: the seed's) on ``train``, deterministic on the others.

    ``eval_cfg`` (default ``cfg``) sizes the deterministic ones (``--eval_image_size``).

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
            ImageTransform(
                cfg if split == "train" else (eval_cfg or cfg),
                train=(split == "train"),
                seed=seed,
                fast_decode=fast_decode,
                augment=augment,
                skip_log=skip_log,
            )
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
