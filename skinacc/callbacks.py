"""Epoch-end decisions that every process must take identically.

Feed these the validation loss *gathered over all processes* (``engine.evaluate`` does that), and
every rank reaches the same decision: the same learning rate, the same best epoch, the same stop.

Do not pass ``ReduceLROnPlateau`` to ``accelerator.prepare``: accelerate then steps it once per process
per call, so with patience 2 on 2 processes the lr drops after 2 bad epochs instead of 3. Build it
with :func:`build_plateau_scheduler`, step it yourself once per epoch, and register it for
checkpointing.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["EarlyStopping", "build_plateau_scheduler", "current_lr"]


class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` epochs; track the best.

    Args:
        patience: Epochs without improvement before stopping; 0 never stops (best is still tracked).
        min_delta: Smallest change that counts as an improvement.
        mode: ``"min"`` (losses) or ``"max"`` (accuracies).
    """

    def __init__(self, patience: int = 3, min_delta: float = 0.0, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode={mode!r}: must be 'min' or 'max'")
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.should_stop = False

    def step(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; return True when it is a new best."""
        better = (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
            if self.patience and self.bad_epochs >= self.patience:
                self.should_stop = True
        return better

    def state_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("patience", "min_delta", "mode", "best", "best_epoch", "bad_epochs", "should_stop")
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        for k, v in sd.items():
            setattr(self, k, v)


def build_plateau_scheduler(
    optimizer: torch.optim.Optimizer, factor: float = 0.5, patience: int = 1, min_lr: float = 0.0
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on validation loss, to be stepped once per epoch on every process."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience, min_lr=min_lr
    )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
