"""Training and inference throughput and memory: FP32 vs fp16 vs bf16, channels-last, torch.compile,
batch sizes, and 1..N processes for speed-up and scaling efficiency.

    # One GPU: sweep precisions, layouts and batch sizes (compile adds slow-starting variants)
    accelerate launch --config_file accelerate_configs/1gpu_fp32.yaml recipes/benchmark_throughput.py \
        --model efficientnet_b3 --compile off on --output_dir outputs/bench_tp
    # ... plus end-to-end training and inference from JPEG files through the real pipeline (precision from
    # the config)
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/benchmark_throughput.py \
        --e2e_data_dir /data/massive-skin-disease --compute false --batch_sizes 256

    # Scaling: this script launches itself under 1, 2 and 4 processes and merges the results
    python recipes/benchmark_throughput.py --launch_processes 1 2 4 --launch_config accelerate_configs/4gpu_fp32.yaml
    # ... the same on CPU with tiny sizes (two gloo ranks)
    python recipes/benchmark_throughput.py --launch_processes 1 2 --launch_config accelerate_configs/cpu_2proc.yaml \
        --launch_cpu --model test_efficientnet --image_size 64 --batch_sizes 8 32 --steps 3

Launch with mixed precision "no" (the sweep applies autocast itself; the fp32 configs do). Writes
throughput.json, throughput.csv and plots (throughput and memory by precision, speed-up and
efficiency vs processes) to --output_dir.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
from _cli import parse_args, run
from accelerate import Accelerator
from accelerate.utils import set_seed

from skinacc.bench import measure_compute, measure_end_to_end
from skinacc.plots import plot_throughput_benchmark
from skinacc.tracking import compare_records, launch_info, log_results_run, main_print, write_json, write_rows

REPO = Path(__file__).resolve().parents[1]
ON_OFF = {"off": False, "on": True}


@dataclass
class ThroughputArguments:
    """What to measure."""

    model: str = field(
        default="efficientnet_b3",
        metadata={"help": "timm model (random weights: speed does not depend on them)."},
    )
    num_classes: int = field(default=35, metadata={"help": "Classifier size (the seed's 35 classes)."})
    image_size: int = field(default=224, metadata={"help": "Input side in pixels."})
    batch_sizes: list[int] = field(
        default_factory=lambda: [64, 256],
        metadata={"help": "Per-process batch sizes (the seed's 64 and a larger one)."},
    )
    precisions: list[str] = field(
        default_factory=lambda: ["fp32", "fp16", "bf16"], metadata={"help": "fp32, fp16, bf16."}
    )
    channels_last: list[str] = field(
        default_factory=lambda: ["off", "on"],
        metadata={"help": "Memory formats to try: off (NCHW), on (NHWC)."},
    )
    compile: list[str] = field(
        default_factory=lambda: ["off"], metadata={"help": "torch.compile settings to try: off, on."}
    )
    modes: list[str] = field(
        default_factory=lambda: ["train", "infer"],
        metadata={"help": "train (forward+backward+Adam) and/or infer."},
    )
    steps: int = field(default=20, metadata={"help": "Timed steps per variant."})
    warmup: int = field(default=5, metadata={"help": "Untimed steps per variant (autotuning, compilation)."})
    compute: bool = field(
        default=True,
        metadata={
            "help": "Run the compute sweep on random tensors (--compute false with --e2e_data_dir: end-to-end rows only)."
        },
    )
    e2e_data_dir: str | None = field(
        default=None,
        metadata={"help": "JPEG image folder: also measure end-to-end training through skinacc's pipeline."},
    )
    e2e_batches: int = field(
        default=30,
        metadata={
            "help": "Timed batches of the end-to-end measurement (after 5 warm-up batches; small folders are read for several epochs)."
        },
    )
    e2e_preresize: bool = field(
        default=False, metadata={"help": "End-to-end run on the pre-resized cache (--preresize of training)."}
    )
    e2e_workers: int = field(
        default=8, metadata={"help": "DataLoader workers per process for the end-to-end measurement."}
    )
    e2e_channels_last: bool = field(
        default=True,
        metadata={
            "help": "Channels-last model and batches in the end-to-end runs (training's --channels_last)."
        },
    )
    output_dir: str = field(default="outputs/bench_throughput", metadata={"help": "Results and plots."})
    launch_processes: list[int] | None = field(
        default=None, metadata={"help": "Driver mode: launch this script under each process count and merge."}
    )
    launch_config: str = field(
        default="accelerate_configs/1gpu_fp32.yaml",
        metadata={"help": "accelerate config for driver mode (--num_processes is overridden)."},
    )
    report_to: str = field(
        default="none", metadata={"help": "'wandb' also logs the results table and plots to W&B."}
    )
    project: str = field(default="skinacc", metadata={"help": "W&B project."})
    launch_cpu: bool = field(
        default=False,
        metadata={"help": "Driver mode on CPU: ACCELERATE_USE_CPU=1 and --mixed_precision no (gloo ranks)."},
    )

    def validate(self) -> list[str]:
        p = [
            f"--precisions: {x!r} is not fp32, fp16 or bf16"
            for x in self.precisions
            if x not in ("fp32", "fp16", "bf16")
        ]
        p += [
            f"--channels_last/--compile: {x!r} is not off or on"
            for x in [*self.channels_last, *self.compile]
            if x not in ON_OFF
        ]
        p += [f"--modes: {x!r} is not train or infer" for x in self.modes if x not in ("train", "infer")]
        p += [f"--batch_sizes: {b} must be >= 1" for b in self.batch_sizes if b < 1]
        if self.launch_processes and any(n < 1 for n in self.launch_processes):
            p.append(f"--launch_processes={self.launch_processes}: counts must be >= 1")
        if (
            self.launch_processes
            and not (REPO / self.launch_config).is_file()
            and not Path(self.launch_config).is_file()
        ):
            p.append(f"--launch_config={self.launch_config!r}: no such file")
        if not self.compute and not self.e2e_data_dir:
            p.append("--compute false: nothing to measure without --e2e_data_dir")
        if self.e2e_data_dir and not Path(self.e2e_data_dir).is_dir():
            p.append(f"--e2e_data_dir={self.e2e_data_dir!r}: no such folder")
        if self.e2e_batches < 1:
            p.append(f"--e2e_batches={self.e2e_batches}: must be >= 1")
        return p


def measure_all(args: ThroughputArguments) -> list[dict]:
    accelerator = Accelerator()
    set_seed(0)
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    meta = launch_info(accelerator) | {
        "date": str(date.today()),
        "platform": platform.platform(),
        "args": {k: v for k, v in vars(args).items()},
    }
    partial = Path(args.output_dir) / f"throughput_{accelerator.num_processes}proc.json"
    rows: list[dict] = []

    def keep(r: dict) -> None:
        # Written after every variant, so a run stopped at a time limit keeps what it measured.
        rows.append(r | {"model": args.model})
        if accelerator.is_main_process:
            write_json(partial, {"meta": meta, "results": rows})

    for mode, bs, prec, cl, comp in (
        itertools.product(args.modes, args.batch_sizes, args.precisions, args.channels_last, args.compile)
        if args.compute
        else ()
    ):
        try:
            r = measure_compute(
                accelerator,
                args.model,
                args.num_classes,
                args.image_size,
                bs,
                prec,
                ON_OFF[cl],
                ON_OFF[comp],
                mode,
                args.steps,
                args.warmup,
            )
        except Exception as e:  # e.g. out of memory at a large batch: record it, keep going
            r = {
                "mode": mode,
                "precision": prec,
                "channels_last": ON_OFF[cl],
                "compile": ON_OFF[comp],
                "batch_size": bs,
                "processes": accelerator.num_processes,
                "error": f"{type(e).__name__}: {str(e)[:200]}",
            }
            if accelerator.device.type == "cuda":
                torch.cuda.empty_cache()
        keep(r)
        main_print(
            accelerator,
            f"{mode:5s} bs={bs:<4d} {prec} cl={cl:<3s} compile={comp:<3s}: "
            + (
                f"{r['images_per_sec']:9.1f} img/s  {r['peak_mem_mb']:8.0f} MB"
                if "error" not in r
                else r["error"]
            ),
        )
    if args.e2e_data_dir:
        for bs in args.batch_sizes:
            rows_e2e = measure_end_to_end(
                accelerator,
                args.e2e_data_dir,
                args.model,
                args.image_size,
                bs,
                modes=args.modes,
                batches=args.e2e_batches,
                workers=args.e2e_workers,
                channels_last=args.e2e_channels_last,
                preresize=args.e2e_preresize,
            )
            for r in rows_e2e:
                keep(r)
                wait = f", data wait {r['data_wait_pct']:.1f}%" if "data_wait_pct" in r else ""
                main_print(
                    accelerator,
                    f"{r['mode']} bs={bs:<4d} {r['precision']}: {r['images_per_sec']:9.1f} img/s{wait}",
                )
    accelerator.end_training()
    return rows


def add_scaling(rows: list[dict]) -> list[dict]:
    """Speed-up and efficiency vs the fewest-process run of each variant; throughput and memory vs fp32."""
    return compare_records(rows, ("model", "mode", "precision", "channels_last", "compile", "batch_size"))


def write(rows: list[dict], out: Path, meta: dict, args: ThroughputArguments) -> None:
    write_rows(out / "throughput", rows, meta)
    plots = plot_throughput_benchmark(rows, out)
    for p in plots:
        print(p)
    log_results_run(
        args.report_to, args.project, "benchmark_throughput", rows, plots, meta | {"args": vars(args)}, out
    )


def main(argv: list[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    (args,) = parse_args((ThroughputArguments,), argv, description=__doc__)
    out = Path(args.output_dir)
    if not args.launch_processes:
        rows = measure_all(args)
        if int(os.environ.get("RANK", "0")) == 0 and not os.environ.get("SKINACC_BENCH_CHILD"):
            write(add_scaling(rows), out, {"processes": [rows[0]["processes"]] if rows else []}, args)
        return rows
    # Driver: re-launch this script under each process count, then merge.
    drop = {"--launch_processes", "--launch_config", "--launch_cpu", "--report_to"}
    child_args, skip = [], False
    for a in argv:
        if skip and not a.startswith("--"):
            continue
        skip = "--" + a.split("=")[0].removeprefix("--").replace("-", "_") in drop
        if not skip:
            child_args.append(a)
    cfg = str(REPO / args.launch_config) if (REPO / args.launch_config).is_file() else args.launch_config
    env = {
        **os.environ,
        "SKINACC_BENCH_CHILD": "1",
        **({"ACCELERATE_USE_CPU": "1"} if args.launch_cpu else {}),
    }
    rows: list[dict] = []
    for n in args.launch_processes:
        cmd = [
            str(Path(sys.executable).parent / "accelerate"),
            "launch",
            "--config_file",
            cfg,
            "--num_processes",
            str(n),
            *(["--mixed_precision", "no"] if args.launch_cpu else []),
            __file__,
            *child_args,
        ]
        print(f"== {n} process(es): {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
        rows += json.loads((out / f"throughput_{n}proc.json").read_text())["results"]
    write(
        add_scaling(rows),
        out,
        {"processes": args.launch_processes, "launch_config": args.launch_config, "date": str(date.today())},
        args,
    )
    return rows


if __name__ == "__main__":
    run(main)
