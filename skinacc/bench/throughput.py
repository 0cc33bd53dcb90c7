"""Model throughput: the compute side on random tensors, and end to end from image files.

- :func:`measure_compute`: one (precision, layout, compile, batch) variant of training or inference on
  random tensors, precision applied in-process so one launch sweeps them all;
- :func:`measure_end_to_end`: training and inference from an image folder through the very pieces
  a training run runs (``skinacc.run.build_training`` and its ``train_epoch``, ``evaluate``), at steady state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from skinacc.config import DataArguments, ModelArguments, TrainArguments
from skinacc.data import build_dataloader, set_transforms
from skinacc.data.plan import augment_config, loader_kwargs
from skinacc.engine import TrainState, peak_memory_mb, reset_peak_memory
from skinacc.evaluation import EvalOutput, evaluate
from skinacc.optim import build_optimizer
from skinacc.run.setup import TrainingSetup, build_training

__all__ = ["measure_compute", "measure_end_to_end", "repeated_loader"]

_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _memory_now_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure_compute(
    accelerator,
    model_name: str,
    num_classes: int,
    image_size: int,
    batch_size: int,
    precision: str = "fp32",
    channels_last: bool = False,
    compile_model: bool = False,
    mode: str = "train",
    steps: int = 20,
    warmup: int = 5,
) -> dict[str, Any]:
    """Images/s and peak memory of one (precision, layout, compile, batch) variant on random tensors.

    Precision is applied with ``torch.autocast`` (plus a gradient scaler for fp16 on CUDA), exactly what
    accelerate's mixed precision does, so one launch can sweep all precisions. Under DDP the model is
    wrapped by ``accelerator.prepare`` and images/s are summed over processes.

    Returns:
        ``images_per_sec`` (all processes), ``images_per_sec_per_process``, ``step_ms``, ``peak_mem_mb``
        (CUDA: peak allocated on this device; CPU: the process's resident memory after the run).
    """
    import timm

    dev = accelerator.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    # The training pipeline's optimizer (fused Adam on CUDA), so compute and end-to-end rows compare.
    optimizer = build_optimizer(model, "adam", 1e-4, fused=dev.type == "cuda") if mode == "train" else None
    if optimizer is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model = accelerator.prepare(model)
    if compile_model:
        model = torch.compile(model)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    dtype = _DTYPES[precision]
    autocast = torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16" and dev.type == "cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        if mode == "train":
            with autocast:
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), autocast:
                model(x)

    model.train(mode == "train")
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    accelerator.wait_for_everyone()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    local = batch_size * steps / dt
    total = accelerator.reduce(torch.tensor([local], device=dev, dtype=torch.float64), reduction="sum").item()
    mem = _memory_now_mb(dev)
    accelerator.free_memory()  # drop the prepared references before the next variant
    return {
        "mode": mode,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_model,
        "batch_size": batch_size,
        "processes": accelerator.num_processes,
        "images_per_sec": total,
        "images_per_sec_per_process": local,
        "step_ms": 1000.0 * dt / steps,
        "peak_mem_mb": mem,
        "device": dev.type,
    }


def measure_end_to_end(
    accelerator,
    data_dir: str,
    model_name: str,
    image_size: int,
    batch_size: int,
    *,
    modes: Sequence[str] = ("train", "infer"),
    batches: int = 30,
    workers: int | None = 8,
    channels_last: bool = True,
    preresize: bool = False,
    warmup_batches: int = 5,
) -> list[dict[str, Any]]:
    """Images/s from JPEG files through skinacc's real pipeline (decode, transforms, loader, step).

    Training reads the training split as one long epoch (the folder repeated when it is small: short
    epochs would restart the loader every few batches, which an epoch of the real set does not) and
    times ``batches`` batches after ``warmup_batches``; inference predicts every image of the folder
    (all splits, repeated to fill ``batches`` batches) with the evaluation transforms in one pass.
    Precision is the launch's (``accelerator.mixed_precision``).

    Args:
        accelerator: The ``Accelerator`` (its mixed precision applies).
        data_dir: Image folder in the Kaggle layout.
        model_name: timm model (random weights; speed does not depend on them).
        image_size: Crop size.
        batch_size: Per-process batch size (training and inference).
        modes: ``train`` and/or ``infer``.
        batches: Timed batches per process.
        workers: DataLoader workers per process (``None``: the node's cores per process).
        channels_last: Channels-last model and batches (training's ``--channels_last``).
        preresize: Read the pre-resized cache (training's ``--preresize``).
        warmup_batches: Training batches left out of the figures (loader start-up, cuDNN autotuning).

    Returns:
        One row per mode: ``mode`` (``train_e2e_jpeg``, ``infer_e2e_preresized``, ...), ``precision``,
        ``images_per_sec`` (all processes), ``data_wait_pct`` (training), ``step_ms``, ``peak_mem_mb``,
        ``images``.
    """
    data_args = DataArguments(
        data_dir=data_dir,
        image_size=image_size,
        test_size=0.02,
        val_size=0.0,
        num_workers=workers,
        verify_images="header",
        preresize=preresize,
    )
    train_args = TrainArguments(batch_size=batch_size, eval_batch_size=batch_size)
    model_args = ModelArguments(model=model_name, pretrained=False, channels_last=channels_last)
    # Speed only: no validation split (and no schedule or early stopping) is needed.
    p = build_training(accelerator, data_args, model_args, train_args, need_validation=False)
    prec = accelerator.mixed_precision if accelerator.mixed_precision != "no" else "fp32"
    base = {
        "precision": prec,
        "channels_last": channels_last,
        "compile": False,
        "batch_size": batch_size,
        "processes": accelerator.num_processes,
        "device": accelerator.device.type,
    }
    source = "preresized" if preresize else "jpeg"
    rows = []
    if "train" in modes:
        loader = repeated_loader(accelerator, p, data_args, "train", batch_size, warmup_batches + batches)
        state = TrainState(world_size=accelerator.num_processes, process_index=accelerator.process_index)
        s = p.train_epoch(
            state, loader=loader, max_batches=warmup_batches + batches, stats_after=warmup_batches, desc="e2e"
        )
        rows.append(
            base
            | {
                "mode": f"train_e2e_{source}",
                "images_per_sec": s["images_per_sec"],
                "data_wait_pct": s["data_wait_pct"],
                "step_ms": s["step_time_ms"],
                "peak_mem_mb": s["peak_mem_mb"],
                "images": s["images"],
            }
        )
    if "infer" in modes:
        res = _infer_all_images(accelerator, p, data_args, batch_size, batches)
        steps = max(1, -(-len(res.labels) // (batch_size * accelerator.num_processes)))
        rows.append(
            base
            | {
                "mode": f"infer_e2e_{source}",
                "images_per_sec": res.images_per_sec,
                "step_ms": 1000.0 * res.seconds / steps,
                "peak_mem_mb": peak_memory_mb(accelerator.device),
                "images": len(res.labels),
            }
        )
    accelerator.free_memory()
    return rows


def repeated_loader(
    accelerator, p: TrainingSetup, data_args: DataArguments, split: str, batch_size: int, min_batches: int
):
    """A prepared loader over ``split`` (``"all"``: every split) repeated whole until it holds at least
    ``min_batches`` batches per process, with the run's transforms and loader settings."""
    import datasets

    flat = (
        datasets.concatenate_datasets([p.plan.source[s] for s in p.plan.source])
        if split == "all"
        else p.plan.source[split]
    )
    if len(flat) == 0:
        raise ValueError(f"{data_args.data_dir!r}: the {split!r} split holds no images")
    copies = max(1, -(-min_batches * batch_size * accelerator.num_processes // len(flat)))
    name = "train" if split == "train" else "test"  # set_transforms augments the split named train only
    ds = set_transforms(
        datasets.DatasetDict({name: datasets.concatenate_datasets([flat] * copies)}),
        p.data_cfg,
        seed=0,
        fast_decode=data_args.fast_decode,
        augment=augment_config(data_args),
    )[name]
    kw = loader_kwargs(data_args, p.plan.workers, seed=0) | {"persistent_workers": False}
    return accelerator.prepare(build_dataloader(ds, batch_size, train=split == "train", **kw))


def _infer_all_images(
    accelerator, p: TrainingSetup, data_args: DataArguments, batch_size: int, min_batches: int
) -> EvalOutput:
    loader = repeated_loader(accelerator, p, data_args, "all", batch_size, min_batches)
    # cuDNN autotuning for the inference shape happens here, outside the timed pass.
    dummy = torch.zeros(batch_size, 3, p.data_cfg.image_size, p.data_cfg.image_size, dtype=torch.uint8)
    p.model.eval()
    with torch.no_grad():
        for _ in range(3):
            p.model(p.normalizer(dummy))
    reset_peak_memory(accelerator.device)
    return evaluate(accelerator, p.predictor(p.model), loader, desc="e2e infer")
