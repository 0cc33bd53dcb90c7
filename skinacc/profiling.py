"""Profiling training with torch.profiler: where the time goes, kernel launches, memory, data wait,
all-reduce.

:func:`profile_training` (``skinacc profile``) profiles a few real training steps of the training run's own
epoch through accelerate (``ProfileKwargs``); :func:`summarize_profile` turns the profiler's events into
plain data (JSON-ready) that ``skinacc.plots`` draws, like the seed's operator-time breakdown, launch
counts and average kernel durations.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["CATEGORIES", "categorize", "profile_training", "summarize_profile"]

# Operator-name fragments -> category, checked in order.
CATEGORIES = (
    ("data loading", ("skinacc/data_wait", "dataloader", "enumerate(DataLoader)")),
    ("all-reduce", ("all_reduce", "allreduce", "nccl", "gloo", "c10d")),
    ("convolution", ("conv", "cudnn_convolution", "winograd", "implicit_gemm")),
    ("matmul", ("mm", "matmul", "linear", "gemm", "addmm", "cutlass", "sm90_xmma", "ampere_")),
    ("normalisation", ("batch_norm", "bn_fw", "bn_bw", "native_batch_norm", "layer_norm")),
    ("activation", ("silu", "relu", "sigmoid", "gelu", "hardswish", "swish")),
    ("optimizer", ("adam", "optimizer", "_foreach", "multi_tensor")),
    ("memory copy", ("copy", "memcpy", "memset", "to(", "_to_copy", "contiguous", "cat", "fill")),
    ("elementwise", ("add", "mul", "div", "sub", "elementwise", "vectorized", "reduce", "sum", "mean")),
)


def categorize(name: str) -> str:
    n = name.lower()
    for cat, keys in CATEGORIES:
        if any(k.lower() in n for k in keys):
            return cat
    return "other"


def _device_time(e) -> float:
    """Self time on the accelerator in microseconds (0 for CPU-only profiles)."""
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(e, attr, None)
        if v:
            return float(v)
    return 0.0


def summarize_profile(prof, steps: int, top: int = 25) -> dict[str, Any]:
    """Condense a finished ``torch.profiler.profile``.

    Args:
        prof: The profiler after its context has exited.
        steps: Training steps recorded (figures are also given per step).
        top: Rows kept in each table.

    Returns:
        ``device`` ("cuda" or "cpu"), ``operators`` (top by self time: name, calls, self/total ms,
        category), ``categories`` (self ms per category), ``kernels`` (CUDA: launches and mean
        duration per kernel; CPU: the top operators by call count, since the CPU has no kernels),
        ``ranges`` (skinacc's named ranges: data wait, forward/backward, optimizer step), ``all_reduce_ms``,
        ``memory`` (top operators by allocated bytes) and per-step totals.
    """
    avgs = prof.key_averages()
    on_device = any(_device_time(e) > 0 for e in avgs)
    ops = []
    for e in avgs:
        self_us = _device_time(e) if on_device else float(e.self_cpu_time_total)
        ops.append(
            {
                "name": e.key,
                "calls": int(e.count),
                "self_ms": self_us / 1000.0,
                "total_ms": (
                    float(getattr(e, "device_time_total", 0) or getattr(e, "cuda_time_total", 0) or 0)
                    if on_device
                    else float(e.cpu_time_total)
                )
                / 1000.0,
                "cpu_self_ms": float(e.self_cpu_time_total) / 1000.0,
                "category": categorize(e.key),
                "self_memory_mb": float(
                    getattr(e, "self_device_memory_usage", 0)
                    if on_device
                    else getattr(e, "self_cpu_memory_usage", 0)
                )
                / 2**20,
            }
        )
    # skinacc's record_function ranges wrap others; keep them out of the self-time tables.
    ranges = {
        o["name"]: {
            "calls": o["calls"],
            "total_ms": float(next(e.cpu_time_total for e in avgs if e.key == o["name"])) / 1000.0,
        }
        for o in ops
        if o["name"].startswith("skinacc/")
    }
    leaf = [o for o in ops if not o["name"].startswith(("skinacc/", "ProfilerStep"))]
    by_self = sorted(leaf, key=lambda o: -o["self_ms"])
    cats: dict[str, float] = defaultdict(float)
    for o in leaf:
        cats[o["category"]] += o["self_ms"]
    if "skinacc/data_wait" in ranges:
        cats["data loading"] = ranges["skinacc/data_wait"]["total_ms"]
    kernels: list[dict[str, Any]] = []
    if on_device:
        stats: dict[str, list[float]] = defaultdict(list)
        for ev in prof.events():
            if str(getattr(ev, "device_type", "")).endswith("CUDA") and getattr(ev, "device_time", 0):
                stats[ev.name].append(float(ev.device_time))
        kernels = sorted(
            (
                {
                    "name": k,
                    "launches": len(v),
                    "mean_us": sum(v) / len(v),
                    "total_ms": sum(v) / 1000.0,
                    "category": categorize(k),
                }
                for k, v in stats.items()
            ),
            key=lambda r: -r["total_ms"],
        )
    else:
        kernels = sorted(
            (
                {
                    "name": o["name"],
                    "launches": o["calls"],
                    "mean_us": 1000.0 * o["self_ms"] / max(o["calls"], 1),
                    "total_ms": o["self_ms"],
                    "category": o["category"],
                }
                for o in leaf
            ),
            key=lambda r: -r["total_ms"],
        )
    all_reduce = sum(o["self_ms"] for o in leaf if o["category"] == "all-reduce")
    total_self = sum(o["self_ms"] for o in leaf)
    return {
        "device": "cuda" if on_device else "cpu",
        "steps": steps,
        "total_self_ms": total_self,
        "self_ms_per_step": total_self / max(steps, 1),
        "kernel_launches": sum(k["launches"] for k in kernels),
        "kernel_launches_per_step": sum(k["launches"] for k in kernels) / max(steps, 1),
        "operators": by_self[:top],
        "categories": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
        "kernels": kernels[:top],
        "kernels_by_launches": sorted(kernels, key=lambda r: -r["launches"])[:top],
        "ranges": ranges,
        "all_reduce_ms": all_reduce,
        "memory": sorted(
            (
                {"name": o["name"], "self_memory_mb": o["self_memory_mb"]}
                for o in leaf
                if o["self_memory_mb"] > 0
            ),
            key=lambda r: -r["self_memory_mb"],
        )[:top],
    }


def profile_training(prof_args, data_args, model_args, args, log_args) -> dict[str, Any]:
    """``skinacc profile``: a few real training steps of the run these options make, under
    ``torch.profiler`` through accelerate's ``ProfileKwargs``, summarised and drawn; the summary."""
    import json
    from pathlib import Path

    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProfileKwargs, set_seed

    from skinacc.engine import TrainState
    from skinacc.plots import plot_profile
    from skinacc.run.setup import build_training
    from skinacc.tracking import launch_info, log_artifact, log_images, start_tracking, wandb_run

    out = Path(prof_args.profile_dir)
    activities = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    handler = ProfileKwargs(
        activities=activities,
        profile_memory=True,
        record_shapes=prof_args.record_shapes,
        output_trace_dir=str(out),
    )
    accelerator = Accelerator(
        kwargs_handlers=[handler],
        log_with=None if log_args.report_to == "none" else log_args.report_to,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
    )
    set_seed(args.seed)
    setup = build_training(accelerator, data_args, model_args, args)
    state = TrainState(world_size=accelerator.num_processes, process_index=accelerator.process_index)
    need = prof_args.warmup_steps + prof_args.profile_steps
    if len(setup.plan.train_loader) < need:
        raise ValueError(
            f"the training split gives {len(setup.plan.train_loader)} batches per process; --warmup_steps + --profile_steps = {need} (use more data or a smaller --batch_size)"
        )
    # The training run's own epoch (skinacc.run.setup.TrainingSetup.train_epoch), first and second part.
    if prof_args.warmup_steps:
        setup.train_epoch(state, max_batches=prof_args.warmup_steps, desc="warm-up")
    with accelerator.profile() as prof:
        stats = setup.train_epoch(state, max_batches=need, desc="profiled")
    summary = summarize_profile(prof, prof_args.profile_steps)
    summary |= {
        "training": stats,
        "launch": launch_info(accelerator),
        "model": model_args.model,
        "batch_size": args.batch_size,
        "image_size": setup.data_cfg.image_size,
        "process_index": accelerator.process_index,
    }
    out.mkdir(parents=True, exist_ok=True)
    # accelerate wrote the Chrome trace as profile_<rank>.json; the summaries go beside it.
    (out / f"summary_{accelerator.process_index}.json").write_text(json.dumps(summary, indent=2))
    if accelerator.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        plots = plot_profile(summary, out)
        print(
            f"profiled {prof_args.profile_steps} steps on {summary['device']}: {stats['images_per_sec']:.1f} img/s, data wait {stats['data_wait_pct']:.1f}%, "
            f"{summary['kernel_launches_per_step']:.0f} launches/step, all-reduce {summary['all_reduce_ms']:.1f} ms"
        )
        for o in summary["operators"][:10]:
            print(f"  {o['self_ms']:9.2f} ms  {o['calls']:6d}x  {o['category']:<14s} {o['name'][:70]}")
        print(
            f"wrote {out}/summary.json, Chrome traces profile_<rank>.json and "
            + ", ".join(p.name for p in plots)
        )
        if log_args.report_to != "none":
            config = {"profile": vars(prof_args), "model": model_args.model}
            start_tracking(accelerator, log_args, config, out, "profile")
            wb = wandb_run(accelerator)
            log_images(wb, {f"profile/{q.stem}": q for q in plots})
            files = sorted(out.glob("profile_*.json")) + sorted(out.glob("summary*.json")) + plots
            log_artifact(
                wb,
                files,
                f"profiler-traces-{wb.id}" if wb else "profiler-traces",
                "profile",
                metadata={"steps": prof_args.profile_steps, "device": summary["device"]},
            )
    accelerator.end_training()
    return summary
