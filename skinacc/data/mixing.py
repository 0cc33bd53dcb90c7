"""MixUp and CutMix of training batches, keyed so that a resumed run mixes exactly as an unbroken one.

The mixing itself is torchvision's (``transforms.v2.MixUp`` / ``CutMix``); what skinacc adds is the
randomness: each batch draws from a private stream seeded by (seed, epoch, batch, process), so the
global RNG (dropout, drop-path) is untouched, every process mixes differently under DDP, and a resume
in the middle of an epoch continues with the same draws.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from skinacc.data.transforms import stream_seed


class BatchMix:
    """Mix a normalised training batch with itself rolled by one (MixUp, CutMix or either).

    Args:
        num_classes: Classes of the one-hot targets.
        mixup_alpha: Beta(alpha, alpha) of MixUp's blending weight; 0 turns MixUp off.
        cutmix_alpha: Beta(alpha, alpha) of CutMix's kept area; 0 turns CutMix off.
        prob: Chance that a batch is mixed at all (an unmixed batch gets one-hot targets).
        switch_prob: With both on, the chance that a mixed batch uses CutMix rather than MixUp.
        seed: The run's seed.
        process: This process's index (each process mixes its own batches differently).

    Raises:
        ValueError: When both alphas are 0 (nothing to mix) or a probability is outside [0, 1].
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        seed: int = 0,
        process: int = 0,
    ):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("BatchMix: mixup_alpha or cutmix_alpha must be > 0")
        for name, p in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"BatchMix: {name}={p} must be in [0, 1]")
        self.num_classes = num_classes
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha > 0 else None
        self.prob = prob
        self.switch_prob = (
            switch_prob
            if self.mixup is not None and self.cutmix is not None
            else float(self.cutmix is not None)
        )
        self.seed = seed
        self.process = process

    def __call__(
        self, x: torch.Tensor, labels: torch.Tensor, epoch: int, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix batch ``batch`` of ``epoch``.

        Args:
            x: Normalised images ``(B, C, H, W)`` (float, any device and memory format).
            labels: Class indices ``(B,)``.
            epoch, batch: Where the batch sits in training (0-based): the key of its draws.

        Returns:
            The mixed images (same memory format as ``x``) and soft targets ``(B, num_classes)`` that sum
            to 1 (cross-entropy takes them as class probabilities; label smoothing still applies; with
            class weights PyTorch then averages the loss over images, not over the weights' sum).
        """
        with torch.random.fork_rng(devices=[]):
            # torchvision draws its Beta weight and CutMix box from the CPU generator. The 0x4D49 tag
            # keeps this stream apart from the images' (seed, epoch, sample) ones.
            torch.manual_seed(stream_seed(self.seed, epoch, batch, self.process, 0x4D49))
            mixed = bool(torch.rand(()) < self.prob)
            if not mixed or x.shape[0] < 2:
                return x, torch.nn.functional.one_hot(labels, self.num_classes).to(x.dtype)
            op = self.cutmix if bool(torch.rand(()) < self.switch_prob) else self.mixup
            fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
            out, targets = op(x, labels)
        if fmt is not None:
            out = out.contiguous(memory_format=fmt)
        return out, targets.to(x.dtype)
