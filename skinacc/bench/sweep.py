"""The throughput and memory sweep of ``skinacc benchmark-throughput``: every variant (precision, layout,
compile, batch size, training and inference) measured in one launch, and the driver that launches the
command under 1..N processes and merges the results with speed-up and scaling efficiency.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

from skinacc.bench.throughput import measure_compute, measure_end_to_end
from skinacc.compare import compare_records
from skinacc.config.tools import ON_OFF, ThroughputArguments
from skinacc.plots import plot_throughput_benchmark
from skinacc.rundir import write_json, write_rows
from skinacc.tracking import launch_info, log_results_run, main_print

__all__ = ["add_scaling", "measure_all", "run_throughput_benchmark"]


def measure_all(args: ThroughputArguments) -> list[dict]:
    """Every variant ``args`` asks for, in this launch (its processes and precision)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

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


def run_throughput_benchmark(args: ThroughputArguments, argv: list[str]) -> list[dict]:
    """``skinacc benchmark-throughput``: measure in this launch, or (``--launch_processes``) launch this
    command under each process count and merge; ``argv`` are the command's arguments (for the children)."""
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
    cfg = args.launch_config
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
            "-m",
            "skinacc",
            "benchmark-throughput",
            *child_args,
        ]
        print(f"== {n} process(es): {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True, env=env)
        rows += json.loads((out / f"throughput_{n}proc.json").read_text())["results"]
    write(
        add_scaling(rows),
        out,
        {"processes": args.launch_processes, "launch_config": args.launch_config, "date": str(date.today())},
        args,
    )
    return rows
