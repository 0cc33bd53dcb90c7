"""The one inference path: uint8 batch -> normalise -> test-time-augmentation views -> forward -> tempered
softmax, averaged over the views.

Training's validation and final test, ``evaluate.py``, ``predict.py``, the web demo and Grad-CAM all
turn pixels into probabilities through a :class:`Predictor`, so a probability means the same thing
wherever it is shown (the tests hold them equal).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from skinacc.calibration import probs_from_logits, tta_views, view_disagreement_of
from skinacc.data.data_config import DataConfig
from skinacc.data.transforms import BatchNormalizer

__all__ = ["Predictor", "set_memory_format"]


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """Put ``model``'s weights in channels-last or contiguous (NCHW) layout, in place, both ways: a model
    an earlier call converted must not keep that layout when asked not to."""
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class Predictor:
    """A classifier as a function of uint8 pixels.

    Args:
        model: The network (prepared, unwrapped or an EMA copy; it is not moved or converted here).
        data_cfg: Its preprocessing (mean and std are used here; sizes by the transforms before).
        tta: Test-time augmentation, ``none``, ``flip`` or ``dihedral`` (:func:`skinacc.calibration.tta_views`).
        temperature: Softmax temperature (1: as trained; a calibrated model's otherwise).
        device: Where batches go (default: the model's).
        channels_last: Normalised batches in channels-last layout (as the model's weights are).
        autocast: Context for the forward passes (``accelerator.autocast``: fp16/bf16 under a launch).
    """

    def __init__(
        self,
        model: nn.Module,
        data_cfg: DataConfig,
        *,
        tta: str = "none",
        temperature: float = 1.0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        autocast: Callable[[], Any] = contextlib.nullcontext,
    ):
        self.model = model
        self.data_cfg = data_cfg
        self.tta = tta
        self.temperature = float(temperature)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.normalizer = BatchNormalizer(data_cfg, self.device, channels_last=channels_last)
        self.autocast = autocast

    @classmethod
    def from_loaded(
        cls,
        loaded,
        *,
        tta: str | None = None,
        temperature: float | None = None,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> Predictor:
        """For a :class:`skinacc.artifact.LoadedModel`, with its stored TTA and temperature unless given."""
        return cls(
            loaded.model,
            loaded.data_cfg,
            tta=tta or loaded.tta,
            temperature=temperature or loaded.temperature,
            channels_last=channels_last,
            **kwargs,
        )

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 3, S, S)`` -> normalised float on the device."""
        return self.normalizer(pixels)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every view's logits, ``(N, views, classes)`` in float32 (call under ``torch.no_grad``)."""
        x = self.normalize(pixels)
        with self.autocast():
            return torch.stack([self.model(v).float() for v in tta_views(x, self.tta)], 1)

    def probs(self, logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """Probabilities from :meth:`logits` (or single-view ``(N, classes)`` logits): each view's
        softmax at the temperature, averaged over views (float64)."""
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu()
        return probs_from_logits(logits, self.temperature)

    def disagreement(self, logits: torch.Tensor | np.ndarray) -> np.ndarray | None:
        """Per image of :meth:`logits`, the share of views whose top class differs from the averaged
        prediction's (the ``tta_disagreement`` uncertainty); None with one view."""
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu()
        return view_disagreement_of(logits, self.temperature)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        """Probabilities ``(N, classes)`` for a uint8 batch."""
        return self.probs(self.logits(pixels))
