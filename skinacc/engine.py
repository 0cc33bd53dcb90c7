"""The training step and the epoch, measured.

Works with any ``Accelerator`` set-up (one process, DDP, fp16/bf16 autocast, torch.compile): the model,
optimizer and loaders are the prepared ones. Every figure a user sees is computed over all processes:
the running sums are reduced once per epoch. Evaluation is :mod:`skinacc.evaluation`.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.profiler import record_function

from skinacc.console import progress_bar
from skinacc.data.transforms import BatchNormalizer

__all__ = ["TrainState", "peak_memory_mb", "reset_peak_memory", "train_one_epoch"]


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
