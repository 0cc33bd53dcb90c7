"""The training step, the epoch and evaluation, measured.

Works with any ``Accelerator`` set-up (one process, DDP, fp16/bf16 autocast, torch.compile): the model,
optimizer and loaders are the prepared ones. Every figure a user sees is computed over all processes:
training sums are reduced once per epoch, evaluation outputs are gathered with ``gather_for_metrics``
so each sample counts exactly once.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from skinacc.calibration import calibrate, probs_from_logits, tta_views
from skinacc.console import progress_bar
from skinacc.data.transforms import BatchNormalizer

__all__ = [
    "EvalOutput",
    "PredictionLog",
    "TrainState",
    "assert_ranks_agree",
    "build_optimizer",
    "calibrate_and_test",
    "evaluate",
    "peak_memory_mb",
    "reset_peak_memory",
    "train_one_epoch",
]


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated since the last reset (CUDA), else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@dataclass
class TrainState:
    """Where training is, saved in every checkpoint so a resumed run continues exactly.

    ``loss_sum``/``correct``/``seen`` are this process's running sums for the current epoch. A
    checkpoint stores every process's sums (see :meth:`snapshot`), and on load each process takes its
    own back: the epoch-end reduction then adds the same numbers in the same order as an unbroken run
    (bit-identical figures with several processes too). A mid-epoch checkpoint is resumed with the
    world size it was saved with (checked by :func:`skinacc.checkpoint.load_checkpoint`).
    """

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1
    process_index: int = 0
    saved_world_size: int = 1  # world size of the checkpoint this state was loaded from
    _saved_sums: list[tuple[float, int, int]] | None = None

    def start_epoch(self) -> None:
        self.batch_in_epoch = 0
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def snapshot(self, accelerator) -> None:
        """Gather every process's running sums; call on every rank right before ``save_state``."""
        t = torch.tensor(
            [[float(self.loss_sum), float(self.correct), float(self.seen)]],
            dtype=torch.float64,
            device=accelerator.device,
        )
        rows = accelerator.gather(t).cpu().tolist() if accelerator.num_processes > 1 else t.cpu().tolist()
        self._saved_sums = [(r[0], int(r[1]), int(r[2])) for r in rows]

    def state_dict(self) -> dict[str, Any]:
        per = self._saved_sums or [(float(self.loss_sum), int(self.correct), int(self.seen))]
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "sums": [sum(r[0] for r in per), sum(r[1] for r in per), sum(r[2] for r in per)],
            "process_sums": [list(r) for r in per],
            "history": self.history,
            "world_size": self.world_size,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.epoch = int(sd["epoch"])
        self.batch_in_epoch = int(sd["batch_in_epoch"])
        self.global_step = int(sd["global_step"])
        self.history = list(sd["history"])
        self.saved_world_size = int(sd.get("world_size", 1))
        per = sd.get("process_sums")
        if per is not None and len(per) == self.world_size:
            loss_sum, correct, seen = per[self.process_index]
        elif self.process_index == 0:  # skinacc < 0.2 kept the totals only: process 0 takes them
            loss_sum, correct, seen = sd["sums"]
        else:
            loss_sum, correct, seen = 0.0, 0, 0
        self.loss_sum, self.correct, self.seen = float(loss_sum), int(correct), int(seen)


@dataclass
class EvalOutput:
    """Everything an evaluation produced, gathered over processes (each sample exactly once).

    ``logits`` holds every test-time-augmentation view, ``(N, V, C)``; ``probs`` averages the views'
    softmax at ``temperature`` (set it to apply a calibration; see :mod:`skinacc.calibration`).
    """

    logits: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    seconds: float
    images_per_sec: float
    temperature: float = 1.0

    @property
    def probs(self) -> np.ndarray:
        if not len(self.labels):
            return np.zeros((0, self.logits.shape[-1] if self.logits.ndim == 3 else 0))
        return probs_from_logits(self.logits, self.temperature)

    @property
    def losses(self) -> np.ndarray:
        """Per-sample negative log-likelihood of the (view-averaged, tempered) probabilities."""
        p = self.probs
        return -np.log(np.clip(p[np.arange(len(self.labels)), self.labels], 1e-12, None))

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.labels) else float("nan")

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(1) == self.labels).mean()) if len(self.labels) else float("nan")

    def headline_metrics(self, class_names: list[str]) -> dict[str, float]:
        """``loss``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_macro`` and ``ece``
        (what training logs and selects on every epoch)."""
        from skinacc.metrics import compute_all

        m = compute_all(self.labels, self.probs, class_names, top_k=())
        keep = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece")
        return {"loss": self.loss} | {k: m[k] for k in keep} | {"images": len(self.labels)}

    def uncalibrated_ece(self) -> float:
        """ECE of the probabilities at temperature 1 (what a calibration started from)."""
        from skinacc.metrics.functional import expected_calibration_error

        return expected_calibration_error(self.labels, probs_from_logits(self.logits))


def train_one_epoch(
    accelerator,
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    normalizer: BatchNormalizer,
    state: TrainState,
    *,
    max_batches: int | None = None,
    max_grad_norm: float | None = None,
    on_step: Callable[[TrainState, torch.Tensor], None] | None = None,
    desc: str = "train",
    stats_after: int = 0,
    lr_scheduler: Any = None,
    ema: nn.Module | None = None,
    mix: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Train for one epoch (or the rest of one, after a resume).

    Args:
        accelerator: The ``Accelerator``.
        model, optimizer, loader: Prepared by ``accelerator.prepare``; ``loader`` may already skip the
            batches done before a resume.
        loss_fn: Training criterion.
        normalizer: Turns uint8 batches into normalised float on the device.
        state: Progress and running sums, updated in place.
        max_batches: Stop the epoch after this many batches in total (counting resumed ones).
        max_grad_norm: Clip gradients to this norm when given.
        on_step: Called after every optimizer step with the state and the (detached) batch loss.
        desc: Progress-bar label.
        stats_after: Leave this call's first N batches out of the speed figures (``images``,
            ``seconds``, ``images_per_sec``, data wait, step time): loader start-up and cuDNN autotuning.
            Benchmarks use it; training reports whole epochs (0).
        lr_scheduler: A per-update schedule (timm's ``step_update(num_updates)`` interface, e.g.
            ``CosineLRScheduler(t_in_epochs=False)``), told the new step count after every optimizer step:
            the lr is a pure function of the step, so a resumed run continues on the same curve.
        ema: A ``timm.utils.ModelEmaV3`` of the unwrapped model, updated after every optimizer step.
        mix: MixUp/CutMix of each normalised batch (``skinacc.data.BatchMix``), called with the images,
            labels, epoch and batch index; the loss takes its soft targets. Training accuracy still
            compares with the unmixed labels (a rough figure while mixing).

    Returns:
        Epoch figures over all processes: ``loss``, ``accuracy``, ``images``, ``seconds``,
        ``images_per_sec``, ``data_wait_s``, ``data_wait_pct``, ``step_time_ms``, ``peak_mem_mb``.
    """
    model.train()
    device = accelerator.device
    reset_peak_memory(device)
    total = len(loader) + state.batch_in_epoch
    if max_batches is not None:
        total = min(total, max_batches)
    bar = progress_bar(
        total=total,
        initial=state.batch_in_epoch,
        desc=desc,
        show=accelerator.is_main_process,
        leave=False,
        dynamic_ncols=True,
    )
    wait = 0.0
    local_images = 0
    steps_here = 0
    timing_reset = stats_after == 0  # nothing to leave out
    t_start = time.perf_counter()
    it = iter(loader)
    try:
        while state.batch_in_epoch < total:
            t0 = time.perf_counter()
            # Named ranges show up in torch.profiler traces (recipes/profile.py); they cost ~1 us otherwise.
            with record_function("skinacc/data_wait"):
                try:
                    batch = next(it)
                except StopIteration:
                    break
            wait += time.perf_counter() - t0
            labels = batch["labels"]
            x = normalizer(batch["pixel_values"])
            targets = labels
            if mix is not None:
                x, targets = mix(x, labels, state.epoch, state.batch_in_epoch)
            with accelerator.accumulate(model):
                with record_function("skinacc/forward_backward"):
                    logits = model(x)
                    loss = loss_fn(logits, targets)
                    accelerator.backward(loss)
                with record_function("skinacc/optimizer_step"):
                    if accelerator.sync_gradients and max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            n = labels.shape[0]
            # Running sums stay on the device until the epoch ends: no host sync per step.
            state.loss_sum += loss.detach() * n
            state.correct += (logits.detach().argmax(1) == labels).sum()
            state.seen += n
            local_images += n
            state.batch_in_epoch += 1
            steps_here += 1
            bar.update(1)
            if accelerator.sync_gradients:
                state.global_step += 1
                if lr_scheduler is not None:
                    lr_scheduler.step_update(state.global_step)
                if ema is not None:
                    ema.update(
                        accelerator.unwrap_model(model, keep_torch_compile=False), step=state.global_step
                    )
                if on_step is not None:
                    on_step(state, loss.detach())
            if steps_here == stats_after and not timing_reset:
                # Warm-up done: finish its queued device work, then start the clock.
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                wait, local_images, steps_here, t_start, timing_reset = 0.0, 0, 0, time.perf_counter(), True
    finally:  # a stop raised in on_step leaves the console line clean
        bar.close()
    _materialise(state)
    seconds = time.perf_counter() - t_start
    sums = torch.tensor(
        [state.loss_sum, state.correct, state.seen, local_images, wait], dtype=torch.float64, device=device
    )
    sums = accelerator.reduce(sums, reduction="sum")
    loss_sum, correct, seen, images, wait_all = (float(v) for v in sums)
    n_proc = accelerator.num_processes
    return {
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images": images,
        "seconds": seconds,
        "images_per_sec": images / seconds if seconds > 0 else 0.0,
        "data_wait_s": wait_all / n_proc,
        "data_wait_pct": 100.0 * (wait_all / n_proc) / seconds if seconds > 0 else 0.0,
        "step_time_ms": 1000.0 * seconds / max(steps_here, 1),
        "peak_mem_mb": peak_memory_mb(device),
    }


def _materialise(state: TrainState) -> None:
    """Turn device-side running sums into Python numbers (one host sync)."""
    for name in ("loss_sum", "correct", "seen"):
        v = getattr(state, name)
        if isinstance(v, torch.Tensor):
            setattr(state, name, v.item() if name == "loss_sum" else int(v.item()))


@torch.no_grad()
def evaluate(
    accelerator,
    model: nn.Module,
    loader,
    normalizer: BatchNormalizer,
    *,
    tta: str = "none",
    temperature: float = 1.0,
    desc: str = "eval",
    on_batch: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    keep: bool = True,
    check_stop: Callable[[int], None] | None = None,
) -> EvalOutput:
    """Predict a whole split; outputs are gathered so every sample counts exactly once.

    Args:
        accelerator: The ``Accelerator``.
        model: Prepared model, or an unprepared copy on the device (e.g. an EMA's ``module``): the
            forward runs under ``accelerator.autocast()`` either way.
        loader: Prepared evaluation loader (not shuffled).
        normalizer: uint8 -> normalised float on the device.
        tta: Test-time augmentation, ``none``, ``flip`` or ``dihedral`` (see :func:`skinacc.calibration.tta_views`).
        temperature: Softmax temperature of the returned ``probs`` (1: as trained).
        desc: Progress-bar label.
        on_batch: Called on every process with each gathered batch, ``(logits (B, views, classes),
            labels, sample_ids)`` as numpy, padding rows removed (e.g. to write results as they come).
        keep: Keep the outputs for the returned :class:`EvalOutput`; ``False`` keeps memory flat over
            any number of images (the output then holds only the count and the time).
        check_stop: Called on every process after each batch with the number of batches done (e.g.
            :meth:`skinacc.stopping.StopRequest.checker`); it raises to abandon the evaluation when a
            stop was requested.

    Returns:
        An :class:`EvalOutput` identical on every process, with every view's logits.
    """
    model.eval()
    logits_all, labels, ids = [], [], []
    seen = 0
    t0 = time.perf_counter()
    bar = progress_bar(loader, desc=desc, show=accelerator.is_main_process, leave=False, dynamic_ncols=True)
    with bar:  # closed on a stop too, so the run's message starts on a clean line
        for i, batch in enumerate(bar, 1):
            x = normalizer(batch["pixel_values"])
            with accelerator.autocast():
                z = torch.stack([model(v).float() for v in tta_views(x, tta)], 1)  # (B, views, classes)
            gz, gy, gi = accelerator.gather_for_metrics((z, batch["labels"], batch["sample_id"]))
            if on_batch is not None:
                real = gi >= 0
                seen += int(real.sum())
                on_batch(gz[real].float().cpu().numpy(), gy[real].cpu().numpy(), gi[real].cpu().numpy())
            if keep:
                # Kept on the device until the split is done: a copy to the host per batch would make the
                # loop wait for every batch's GPU work before queueing the next one.
                logits_all.append(gz)
                labels.append(gy)
                ids.append(gi)
            if check_stop is not None:
                check_stop(i)
    cat = lambda xs, dt: torch.cat(xs).cpu().numpy().astype(dt) if xs else np.zeros((0,), dtype=dt)  # noqa: E731
    seconds = time.perf_counter() - t0
    sample_ids = cat(ids, np.int64)
    # Padding rows (sample_id -1: a streaming loader fills every rank's batches to one shape) are dropped.
    real = sample_ids >= 0
    out = EvalOutput(
        logits=cat(logits_all, np.float32)[real] if logits_all else np.zeros((0, 1, 0), np.float32),
        labels=cat(labels, np.int64)[real],
        sample_ids=sample_ids[real],
        seconds=seconds,
        images_per_sec=0.0,
        temperature=temperature,
    )
    n = len(out.labels) if keep or on_batch is None else seen
    out.images_per_sec = n / seconds if seconds > 0 else 0.0
    return out


class PredictionLog:
    """Evaluation results appended batch by batch to a binary file of fixed-size records
    (``sample_id`` int64, ``label`` int64, ``probs`` float32 x classes), so that an evaluation of any
    size keeps flat memory and one that stopped continues where its file ends.

    A JSON sidecar (``<path>.json``) records what produced the records (model, split, TTA,
    temperature); :meth:`start` refuses to continue records made otherwise.
    """

    def __init__(self, path, num_classes: int):
        from pathlib import Path

        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.dtype = np.dtype([("sample_id", "<i8"), ("label", "<i8"), ("probs", "<f4", (num_classes,))])

    def start(self, settings: dict[str, Any], resume: bool) -> np.ndarray:
        """Begin (truncating any old records) or, with ``resume``, continue: returns the sample ids
        already done (a record cut by a crash is dropped).

        Raises:
            ValueError: ``resume`` and the records were made with other settings.
        """
        import json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.is_file():
            old = json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}
            if old != settings:
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise ValueError(
                    f"--resume: {self.path} holds predictions made with other settings ({', '.join(diff)}); "
                    "evaluate again without --resume (or into another --output_dir)"
                )
            whole = self.path.stat().st_size // self.dtype.itemsize * self.dtype.itemsize
            with self.path.open("r+b") as f:
                f.truncate(whole)
            return self.read()[0]
        self.meta_path.write_text(json.dumps(settings))
        self.path.write_bytes(b"")
        return np.zeros(0, np.int64)

    def append(self, sample_ids: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
        rec = np.empty(len(sample_ids), self.dtype)
        rec["sample_id"], rec["label"], rec["probs"] = sample_ids, labels, probs
        with self.path.open("ab") as f:
            f.write(rec.tobytes())

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sample_ids, labels, probs)`` of every whole record."""
        rec = np.fromfile(self.path, dtype=self.dtype) if self.path.is_file() else np.zeros(0, self.dtype)
        return rec["sample_id"].copy(), rec["label"].copy(), rec["probs"].astype(np.float64)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def calibrate_and_test(
    accelerator,
    model: nn.Module,
    normalizer: BatchNormalizer,
    *,
    val_loader=None,
    test_loader=None,
    tta: str = "none",
    stop=None,
) -> tuple[dict[str, float] | None, EvalOutput | None]:
    """The end of a run: fit a temperature on ``val_loader`` (when given), then evaluate ``test_loader``
    (when given) at that temperature, both with test-time augmentation ``tta``.

    Args:
        stop: A :class:`skinacc.stopping.StopRequest`: a stop abandons the calibration or the test
            (:class:`skinacc.stopping.TrainingStopped` is raised).

    Returns:
        ``(calibration, test)``: :func:`skinacc.calibration.calibrate`'s figures (or None) and the
        test :class:`EvalOutput` (or None).
    """
    cal = None
    temperature = 1.0
    checks = (lambda phase: None) if stop is None else stop.checker
    if val_loader is not None:
        val = evaluate(
            accelerator,
            model,
            val_loader,
            normalizer,
            tta=tta,
            desc="calibrate",
            check_stop=checks("calibration"),
        )
        cal = calibrate(val.logits, val.labels) | {"images": len(val.labels)}
        temperature = cal["temperature"]
    test = None
    if test_loader is not None:
        test = evaluate(
            accelerator, model, test_loader, normalizer, tta=tta, temperature=temperature, desc="test",
            check_stop=checks("final test"),
        )  # fmt: skip
    return cal, test


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


def assert_ranks_agree(accelerator, value: float, name: str) -> None:
    """Raise if processes hold different values for a decision input (e.g. the gathered val loss).

    Cheap (one tiny gather per epoch) and it turns a silent DDP divergence into a clear error.
    """
    if accelerator.num_processes == 1:
        return
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    allv = accelerator.gather(t).cpu().tolist()
    if any(v != allv[0] and not (math.isnan(v) and math.isnan(allv[0])) for v in allv):
        raise RuntimeError(f"processes disagree on {name}: {allv}")
