"""DataLoaders that behave under ``accelerate launch``.

Build plain ``torch.utils.data.DataLoader`` objects here and hand them to ``accelerator.prepare``: it
shards batches across processes, moves them to the device and (with ``use_seedable_sampler``) makes
the shuffle order a pure function of ``(seed, epoch)``, which is what exact resumption needs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from skinacc.data.transforms import ImageTransform
from skinacc.stopping import worker_context, worker_shield

__all__ = [
    "BalancedSampler",
    "balanced_class_weights",
    "build_dataloader",
    "collate_skin",
    "default_num_workers",
    "get_transform",
]

logger = logging.getLogger(__name__)


def default_num_workers(requested: int | None, num_processes: int = 1) -> int:
    """Workers per process so that all processes on a node together fit its CPU cores.

    ``None`` means as many as fit, keeping one core per process for its main loop; an explicit number
    is capped the same way (oversubscribed decoding workers only slow each other down).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, num_processes))
    if requested is None:
        return max(1, share - 1)
    return max(0, min(requested, share))


def balanced_class_weights(labels, num_classes: int) -> torch.Tensor:
    """Loss weights ``n / (classes x count_c)`` (scikit-learn's ``"balanced"``): every class weighs as
    much in total as any other. Classes absent from ``labels`` get weight 0 (they cannot occur).

    Raises:
        ValueError: ``labels`` is empty.
    """
    y = np.asarray(labels, dtype=np.int64)
    if not len(y):
        raise ValueError("balanced class weights need at least one label")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = len(y) / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


class BalancedSampler(Sampler[int]):
    """Draw an epoch of indices with replacement so that every class is equally likely.

    Each index is drawn with probability ``1 / (classes x count of its class)``. The whole epoch's
    sequence is a pure function of ``(seed, epoch)``: every process computes the same sequence and
    ``accelerator.prepare`` hands each its own share of the batches (so DDP sees each drawn sample once),
    and a run resumed mid-epoch skips into the very same sequence.

    Args:
        labels: Class id of every sample of the split.
        seed: Base seed.
        num_samples: Draws per epoch (default: the split's size, so an epoch costs what it did).
    """

    def __init__(self, labels, seed: int = 0, num_samples: int | None = None):
        y = np.asarray(labels, dtype=np.int64)
        if not len(y):
            raise ValueError("--sampler balanced: the training split is empty")
        counts = np.bincount(y)
        w = 1.0 / counts[y]
        self.p = w / w.sum()
        self.seed = seed
        self.num_samples = int(num_samples or len(y))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        return iter(rng.choice(len(self.p), size=self.num_samples, replace=True, p=self.p).tolist())


def collate_skin(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples, leaving out any whose image failed to decode (already warned about)."""
    good = [s for s in samples if s["pixel_values"] is not None]
    if not good:
        return {
            "pixel_values": torch.empty(0, dtype=torch.uint8),
            "labels": torch.empty(0, dtype=torch.long),
            "sample_id": torch.empty(0, dtype=torch.long),
        }
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in good]),
        "labels": torch.tensor([int(s["labels"]) for s in good], dtype=torch.long),
        "sample_id": torch.tensor([int(s["sample_id"]) for s in good], dtype=torch.long),
    }


def get_transform(dataset) -> ImageTransform | None:
    """The :class:`ImageTransform` attached to a ``datasets.Dataset`` by ``set_transforms``, if any."""
    fmt = getattr(dataset, "format", None) or {}
    t = (fmt.get("format_kwargs") or {}).get("transform")
    return t if isinstance(t, ImageTransform) else None


def build_dataloader(
    dataset,
    batch_size: int,
    train: bool,
    num_workers: int = 4,
    pin_memory: bool = True,
    persistent_workers: bool = True,
    prefetch_factor: int = 4,
    seed: int = 0,
    drop_last: bool | None = None,
    sampler: Sampler | None = None,
    start_method: str | None = None,
) -> DataLoader:
    """A DataLoader over a transformed ``datasets.Dataset``.

    Args:
        dataset: A split with transforms set (see :func:`skinacc.data.set_transforms`).
        batch_size: Per-process batch size.
        train: Shuffle (and drop an incomplete last batch) when True.
        num_workers: Worker processes; 0 loads in the main process.
        pin_memory: Pin host memory; only takes effect when CUDA is available.
        persistent_workers: Keep workers between epochs (only with workers).
        prefetch_factor: Batches each worker prepares ahead (only with workers).
        seed: Seeds the shuffle generator (accelerate's seedable sampler adds the epoch).
        drop_last: Override the default (True for training when the split exceeds one batch).
        sampler: Draw the order from this sampler (e.g. :class:`BalancedSampler`) instead of shuffling.
        start_method: How workers start, ``"fork"`` or ``"spawn"`` (default: fork where the platform
            has it). Either way they are shielded from stop signals from their first instant
            (:func:`skinacc.stopping.worker_context`).
    """
    gen = torch.Generator()
    gen.manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            # Workers are born with stop signals held until their shield (worker_init_fn) is up.
            multiprocessing_context=worker_context(start_method),
            # Workers leave stop signals to the training process (a launcher signals the whole tree).
            worker_init_fn=worker_shield(),
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        # Drop a ragged last training batch (a batch of 1 breaks BatchNorm), unless that drops all.
        drop_last=(train and len(dataset) > batch_size) if drop_last is None else drop_last,
        collate_fn=collate_skin,
        generator=gen,
        **kwargs,
    )
