"""The optimisation recipe, checkpointing and the end-of-run evaluation: :class:`TrainArguments`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skinacc.config.fields import option

__all__ = ["TrainArguments"]


@dataclass
class TrainArguments:
    """The optimisation recipe (seed defaults), checkpointing and evaluation."""

    output_dir: str = option(
        "Directory for checkpoints, history, metrics and plots.",
        default="outputs/run",
        resume=True,
        setup=False,
    )
    epochs: int = option("Maximum number of epochs (early stopping may end sooner).", default=30)
    batch_size: int = option(
        "Training batch size per process (seed: 64).", default=64, card="batch per process"
    )
    eval_batch_size: int | None = option(
        "Evaluation batch size per process (default: 2 x batch_size).", default=None, resume=True
    )
    optimizer: Literal["adam", "adamw", "sgd"] = option(
        "Optimizer (seed: adam). 'adamw' decouples weight decay from the gradient.", default="adam"
    )
    lr: float = option("Learning rate (seed: 1e-3).", default=1e-3)
    weight_decay: float = option("Weight decay (not applied to biases and norm parameters).", default=0.0)
    momentum: float = option("Momentum for sgd.", default=0.9)
    layer_decay: float | None = option(
        "Layer-wise learning-rate decay: each layer (timm's fine-grained group_matcher, stem first) "
        "learns at lr x layer_decay^(layers above it), so ImageNet features near the input change least. "
        "None or 1.0: one lr for every layer.",
        default=None,
    )
    label_smoothing: float = option("Cross-entropy label smoothing.", default=0.0, card="label smoothing")
    class_weighting: Literal["none", "balanced"] = option(
        "Loss weights per class: 'balanced' weighs each class by n / (classes x count) of the training "
        "split, so rare classes count as much as common ones.",
        default="none",
    )
    sampler: Literal["random", "balanced"] = option(
        "Training order: 'random' (shuffle) or 'balanced' (draw with replacement, every class equally "
        "likely; a function of seed and epoch, sharded over processes, resumable).",
        default="random",
    )
    mixup_alpha: float = option(
        "MixUp: blend each training image with another of its batch, weight ~ Beta(alpha, alpha), and "
        "their targets alike (torchvision's v2.MixUp; 0.2-0.8 typical, 0 off).",
        default=0.0,
    )
    cutmix_alpha: float = option(
        "CutMix: paste a box of another image of the batch, area ~ Beta(alpha, alpha), targets by area "
        "(torchvision's v2.CutMix; 1.0 typical, 0 off). With --mixup_alpha too, each mixed batch uses one.",
        default=0.0,
    )
    mix_prob: float = option(
        "Chance that a training batch is mixed (--mixup_alpha/--cutmix_alpha); draws keyed by seed, "
        "epoch, batch and process, so a resume mixes as an unbroken run.",
        default=1.0,
    )
    mix_switch_prob: float = option(
        "With both --mixup_alpha and --cutmix_alpha: chance that a mixed batch uses CutMix.", default=0.5
    )
    grad_accum_steps: int = option("Gradient accumulation steps.", default=1)
    max_grad_norm: float | None = option("Clip gradients to this norm (off by default).", default=None)
    scheduler: Literal["plateau", "cosine"] = option(
        "Learning-rate schedule: 'plateau' (the seed's ReduceLROnPlateau on the selection metric, once per "
        "epoch) or 'cosine' (timm's CosineLRScheduler, stepped every optimizer step, after "
        "--warmup_epochs of linear warm-up).",
        default="plateau",
    )
    warmup_epochs: float = option(
        "Linear warm-up from --min_lr to --lr over this many epochs (--scheduler cosine).", default=0.0
    )
    plateau_factor: float = option("ReduceLROnPlateau: factor the lr is multiplied by.", default=0.5)
    plateau_patience: int = option(
        "ReduceLROnPlateau: epochs without improvement of --select_metric before the lr drops.", default=1
    )
    min_lr: float = option(
        "Lower bound of the lr (plateau), end of the cosine and start of the warm-up.", default=1e-6
    )
    ema_decay: float | None = option(
        "Keep an exponential moving average of the weights (timm's ModelEmaV3); it is validated, chosen "
        "as best, exported and saved in checkpoints. The decay at the t-th optimizer update (from 1) is "
        "min(ema_decay, 1 - t^(-2/3)), timm's warm-up: 0.9 at update 31, 0.984 at 512, 0.998 only from "
        "about 11,000, so in a short run the warm-up, not this cap, sets the averaging window. Off by "
        "default; 0.99-0.999 for thousands of steps, 0.9998 for the 245k-image set.",
        default=None,
        card="EMA decay",
    )
    select_metric: Literal["val_loss", "balanced_accuracy", "macro_f1"] = option(
        "Validation metric that picks the best model and drives early stopping and the plateau "
        "scheduler (seed: val_loss).",
        default="val_loss",
    )
    select_epoch: Literal["best", "last"] = option(
        "Which epoch's weights become the run's model (best/: tested, calibrated, exported): the one with "
        "the best --select_metric, or the last one. With a validation set of ~100 images the 'best' epoch "
        "is partly chosen by noise, while a cosine schedule (with EMA) ends on its steadiest weights.",
        default="best",
    )
    early_stopping_patience: int = option(
        "Stop after this many epochs without improvement of --select_metric (seed: 3; 0 disables).",
        default=3,
    )
    early_stopping_min_delta: float = option(
        "Smallest change of --select_metric that counts as an improvement.", default=0.0
    )
    seed: int = option("Global seed (model init, shuffling, augmentation).", default=42)
    checkpoint_every_n_steps: int = option(
        "Also save a resumable checkpoint every N optimizer steps (0: only at epoch ends).",
        default=0,
        resume=True,
    )
    keep_last_checkpoints: int = option(
        "Resumable checkpoints kept (oldest are deleted).", default=2, resume=True
    )
    resume_from_checkpoint: str | None = option(
        "'latest' (the newest checkpoint in output_dir) or a checkpoint folder to resume from. The resumed "
        "run keeps its optimizer, schedule, data and model options; changing one is refused.",
        default=None,
        resume=True,
        setup=False,
    )
    overwrite_output_dir: bool = option(
        "Replace a previous run in --output_dir (its checkpoints, best model, history and evaluations are "
        "deleted first). Without it, a fresh run refuses a folder that already holds a run.",
        default=False,
        resume=True,
        setup=False,
    )
    max_steps_per_epoch: int | None = option("Cap optimizer steps per epoch (quick runs).", default=None)
    log_every_n_steps: int = option(
        "Log step loss and lr to the tracker every N steps.", default=10, resume=True
    )
    eval_test: bool = option(
        "Evaluate the best checkpoint on the test split at the end.", default=True, resume=True
    )
    tta: Literal["none", "flip", "dihedral"] = option(
        "Test-time augmentation of the final test (and of --calibrate): average the probabilities over "
        "the image and its horizontal mirror ('flip') or its 8 flips/90-degree rotations ('dihedral'). "
        "Stored with the exported model as its default for skinacc's evaluate and predict.",
        default="none",
        resume=True,
        card="test-time augmentation",
    )
    calibrate: bool = option(
        "Fit a softmax temperature on the validation split after training (with --tta); ECE before and "
        "after is reported and the temperature is stored with the model for skinacc's predict/evaluate.",
        default=False,
        resume=True,
    )
    calibrate_from: str | None = option(
        "A finished --cv_folds output folder: store its temperature, fitted on the pooled out-of-fold "
        "predictions (cv_report.json's oof_temperature), with this model. For --final_fit, which keeps no "
        "validation split to --calibrate on; the cross-validation's --tta must be this run's.",
        default=None,
        resume=True,
    )
    final_fit: bool = option(
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
        if self.calibrate_from is not None:
            p += self._calibrate_from_problems()
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

    def _calibrate_from_problems(self) -> list[str]:
        from skinacc.rundir import oof_temperature

        if self.calibrate:
            return [f"--calibrate_from={self.calibrate_from!r} and --calibrate: choose one temperature"]
        try:
            _, tta = oof_temperature(self.calibrate_from)
        except (FileNotFoundError, ValueError) as e:
            return [f"--calibrate_from={self.calibrate_from!r}: {e}"]
        if tta != self.tta:
            return [f"--calibrate_from={self.calibrate_from!r}: its temperature was fitted at --tta {tta}, "
                    f"this run uses --tta {self.tta}: use the same"]  # fmt: skip
        return []
