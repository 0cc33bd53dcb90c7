"""Profile a few training steps of the real pipeline with torch.profiler, through accelerate.

    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/profile_training.py --model efficientnet_b3 --no_pretrained
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml --mixed_precision no \
        recipes/profile_training.py --model test_efficientnet --no_pretrained --image_size 64      # includes gloo all-reduce

Writes to --profile_dir: profile_<rank>.json (Chrome traces, written by accelerate: open in
chrome://tracing or ui.perfetto.dev), summary.json (top operators, time by category, kernel launch counts and mean durations, memory,
data-wait and all-reduce time), operator_time.png, kernel_launches.png, kernel_mean_duration.png.
The steps run through the same skinacc.engine.train_one_epoch as training, so the images/s and
data-wait figures printed here are the training recipe's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _cli import parse_args, run
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProfileKwargs, set_seed

from skinacc.config import DataArguments, LoggingArguments, ModelArguments, TrainArguments
from skinacc.engine import TrainState, train_one_epoch
from skinacc.pipeline import build_training
from skinacc.plots import plot_profile
from skinacc.profiling import summarize_profile
from skinacc.tracking import launch_info, log_artifact, log_images, start_tracking, wandb_run


@dataclass
class ProfileArguments:
    """How much to profile."""

    profile_dir: str = field(
        default="outputs/profile", metadata={"help": "Where traces, summary and plots go."}
    )
    warmup_steps: int = field(
        default=3, metadata={"help": "Steps run before profiling (cuDNN autotune, compile, worker start-up)."}
    )
    profile_steps: int = field(default=5, metadata={"help": "Steps recorded."})
    record_shapes: bool = field(
        default=False, metadata={"help": "Record operator input shapes (bigger traces)."}
    )

    def validate(self) -> list[str]:
        return [f"--{k}: must be >= 1" for k in ("profile_steps",) if getattr(self, k) < 1] + (
            [f"--warmup_steps={self.warmup_steps}: must be >= 0"] if self.warmup_steps < 0 else []
        )


def main(argv: list[str] | None = None) -> dict:
    prof_args, data_args, model_args, args, log_args = parse_args(
        (ProfileArguments, DataArguments, ModelArguments, TrainArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults={"report_to": "none"},
    )
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
    p = build_training(accelerator, data_args, model_args, args)
    state = TrainState(world_size=accelerator.num_processes, process_index=accelerator.process_index)
    need = prof_args.warmup_steps + prof_args.profile_steps
    if len(p.train_loader) < need:
        raise ValueError(
            f"the training split gives {len(p.train_loader)} batches per process; --warmup_steps + --profile_steps = {need} (use more data or a smaller --batch_size)"
        )
    p.train_transform.set_epoch(0)
    p.train_loader.set_epoch(0)
    it_kwargs = dict(max_grad_norm=args.max_grad_norm)
    if prof_args.warmup_steps:
        train_one_epoch(
            accelerator,
            p.model,
            p.train_loader,
            p.optimizer,
            p.loss_fn,
            p.normalizer,
            state,
            max_batches=prof_args.warmup_steps,
            desc="warm-up",
            **it_kwargs,
        )
    rest = accelerator.skip_first_batches(p.train_loader, state.batch_in_epoch)
    with accelerator.profile() as prof:
        stats = train_one_epoch(
            accelerator,
            p.model,
            rest,
            p.optimizer,
            p.loss_fn,
            p.normalizer,
            state,
            max_batches=need,
            desc="profiled",
            **it_kwargs,
        )
    summary = summarize_profile(prof, prof_args.profile_steps)
    summary |= {
        "training": stats,
        "launch": launch_info(accelerator),
        "model": model_args.model,
        "batch_size": args.batch_size,
        "image_size": p.data_cfg.image_size,
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


if __name__ == "__main__":
    run(main)
