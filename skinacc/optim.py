"""The optimizer, its learning-rate schedules, early stopping and the best-epoch choice.

:func:`build_optimizer` makes the parameter groups (weight decay off for biases and norms; layer-wise lr
decay from timm). The epoch-end decisions below must be taken identically by every process.

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
from torch import nn

__all__ = [
    "EarlyStopping",
    "build_cosine_scheduler",
    "build_optimizer",
    "build_plateau_scheduler",
    "build_selection",
    "current_lr",
    "selection_summary",
]


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
        """Record an epoch's value (``epoch`` as the caller numbers it; skinacc counts from 1); return
        True when it is a new best."""
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
    optimizer: torch.optim.Optimizer,
    factor: float = 0.5,
    patience: int = 1,
    min_lr: float = 0.0,
    mode: str = "min",
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on a validation metric (``mode`` "min" for losses, "max" for accuracies), to be
    stepped once per epoch on every process."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr
    )


def build_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
):
    """timm's ``CosineLRScheduler`` over ``epochs x steps_per_epoch`` optimizer updates.

    Linear warm-up from ``min_lr`` to the optimizer's lr over ``warmup_epochs`` (fractions allowed), then
    a half cosine down to ``min_lr`` at the last update. Step it with ``step_update(global_step)`` after
    every optimizer step (``engine.train_one_epoch`` does): the lr is a function of the step count alone,
    and the state it checkpoints is plain data. Not for ``accelerator.prepare`` either: accelerate would
    step it once per process.
    """
    from timm.scheduler import CosineLRScheduler

    total = max(1, int(epochs * steps_per_epoch))
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    return CosineLRScheduler(
        optimizer,
        t_initial=total - warmup,
        lr_min=min_lr,
        warmup_t=warmup,
        warmup_lr_init=min_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest lr of the optimizer's groups: the classifier's under ``--layer_decay``, else the one lr."""
    return max(float(g["lr"]) for g in optimizer.param_groups)


def build_selection(args, optimizer: torch.optim.Optimizer, lr_scheduler=None) -> tuple[Any, EarlyStopping]:
    """The epoch-level decisions of a run: its lr schedule and its early stopper.

    Args:
        args: ``TrainArguments`` (``select_metric``, plateau and early-stopping settings, ``final_fit``).
        optimizer: The (prepared) optimizer.
        lr_scheduler: The per-step schedule when ``--scheduler cosine`` (returned as is); otherwise a
            plateau scheduler on ``--select_metric`` is built.

    Returns:
        ``(scheduler, stopper)``; both have ``state_dict``/``load_state_dict`` for checkpoints.
        With ``final_fit`` the stopper never stops (there is no validation to watch).
    """
    mode = "min" if args.select_metric == "val_loss" else "max"
    scheduler = lr_scheduler or build_plateau_scheduler(
        optimizer, args.plateau_factor, args.plateau_patience, args.min_lr, mode
    )
    patience = 0 if args.final_fit else args.early_stopping_patience
    return scheduler, EarlyStopping(patience, args.early_stopping_min_delta, mode)


def selection_summary(
    history: list[dict[str, Any]], select_metric: str, select_epoch: str, best_epoch: int | None
) -> dict[str, Any]:
    """Which epoch is the run's model and which scored best, each with its own value.

    Args:
        history: The run's epoch records (``epoch`` from 1, ``val_<metric>`` when validated).
        select_metric: ``--select_metric`` (``val_loss``, ``balanced_accuracy``, ...).
        select_epoch: ``--select_epoch``: ``best`` keeps the best epoch's weights, ``last`` the last's.
        best_epoch: The epoch the early stopper found best (``None`` without validation, ``--final_fit``).

    Returns:
        ``model_epoch`` (whose weights are in ``best/``: tested, calibrated, exported) with
        ``model_<metric>``, and ``best_epoch`` with ``best_<metric>``: under ``--select_epoch last``
        they are different epochs in general, and each value is that epoch's own.
    """
    key = "val_" + select_metric.removeprefix("val_")
    by_epoch = {r["epoch"]: r for r in history}
    last = history[-1]["epoch"] if history else None
    model_epoch = best_epoch if select_epoch == "best" and best_epoch is not None else last
    return {
        "model_epoch": model_epoch,
        f"model_{select_metric}": by_epoch.get(model_epoch, {}).get(key),
        "best_epoch": best_epoch,
        f"best_{select_metric}": by_epoch.get(best_epoch, {}).get(key) if best_epoch is not None else None,
    }


def build_optimizer(
    model: nn.Module,
    name: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    fused: bool = False,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """The optimizer by name (seed: Adam, lr 1e-3). Weight decay skips biases and norm parameters.

    Args:
        model: The network whose trainable parameters are optimised (frozen ones are left out).
        name: ``adam``, ``adamw`` or ``sgd``.
        lr: Learning rate (of the classifier, under ``layer_decay``).
        weight_decay: Applied to weights only (not to biases or 1-d norm parameters).
        momentum: Nesterov momentum for ``sgd``.
        fused: Use PyTorch's fused single-kernel update (the training pipeline turns it on for CUDA:
            one launch per step instead of a few per parameter group; same arithmetic).
        layer_decay: Layer-wise lr decay. timm's ``param_groups_layer_decay`` numbers the layers with
            the model's fine-grained ``group_matcher`` (stem 0, one per block, head last) and gives layer
            ``i`` of ``n`` the scale ``layer_decay ** (n - i)``. The scale is folded into each group's
            own ``lr`` (not left as timm's ``lr_scale``), so the cosine schedule, which anneals every
            group from its own starting lr, and the plateau schedule, which multiplies each group's lr,
            both keep the ratios. None or 1.0: two groups, one lr.

    Raises:
        ValueError: For an unknown ``name``, or ``layer_decay`` on a model without ``group_matcher``.
    """
    if layer_decay is not None and layer_decay != 1.0:
        from timm.optim import param_groups_layer_decay

        if getattr(model, "group_matcher", None) is None:
            raise ValueError(
                f"--layer_decay={layer_decay}: {type(model).__name__} defines no layer groups "
                "(group_matcher); leave --layer_decay unset"
            )
        groups = param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)
        for g in groups:
            g["lr"] = lr * g.pop("lr_scale")
    else:
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    # fused=None (not False) leaves PyTorch's own choice (foreach) in place.
    kw = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, **kw)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **kw)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, **kw)
    raise ValueError(f"--optimizer={name!r}: must be one of adam, adamw, sgd")
