"""Epoch time of the dermoscopy recipe under variants, measured side by side (alternated runs).

This machine's speed drifts by up to 1.5x between hours, so a variant's cost is only comparable with
runs made right beside it. Each variant trains the recipe for ``--epochs`` epochs (no test, no
calibration), the variants alternate ``--repeats`` times, and the last epoch's ``epoch_seconds`` of
each run is reported with its ratio to the first variant's mean.

    python benchmarks/recipe_epoch_time.py --variant recipe: --variant freeze5:--freeze_groups=5 \
        --repeats 2 --work /tmp/epoch_time --out benchmarks/results/isic8_freeze5/epoch_time.json

A variant named ``NAME@FILE`` launches with ``accelerate_configs/FILE`` instead of ``cpu.yaml`` (e.g.
``compile@cpu_compile.yaml:`` for torch.compile); its first epoch's time, compilation included, is
reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        help="NAME[@ACCELERATE_CONFIG]:FLAG=VALUE,... (train.py flags)",
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="per run; the last epoch is timed (warm)")
    p.add_argument("--config", default=str(REPO / "recipes" / "configs" / "dermoscopy.yaml"))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not ISIC.is_dir():
        sys.exit(f"{ISIC} not found: this benchmark needs the shared isic8 images")
    variants, launch = {}, {}
    for v in args.variant:
        name, _, flags = v.partition(":")
        variants[name] = [f for f in flags.split(",") if f]
        launch[name] = REPO / "accelerate_configs" / (name.partition("@")[2] or "cpu.yaml")
        if not launch[name].is_file():
            sys.exit(f"--variant {v}: no accelerate config {launch[name]}")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    times: dict[str, list[float]] = {n: [] for n in variants}
    first: dict[str, list[float]] = {n: [] for n in variants}
    for r in range(args.repeats):
        for name, flags in variants.items():
            out = args.work / f"{name.replace('@', '-')}-{r}"
            cmd = [
                ACCELERATE, "launch", "-q", "--config_file", str(launch[name]),
                str(REPO / "recipes" / "train.py"), "--config", args.config, "--data_dir", str(ISIC),
                "--epochs", str(args.epochs), "--eval_test", "false", "--calibrate", "false",
                "--report_to", "none", "--output_dir", str(out), "--overwrite_output_dir", *flags,
            ]  # fmt: skip
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            hist = json.loads((out / "history.json").read_text())
            last = hist[-1]
            times[name].append(last["epoch_seconds"])
            first[name].append(hist[0]["epoch_seconds"])
            print(
                f"{name} run {r}: {last['epoch_seconds']:.1f} s ({last['images_per_sec']:.1f} img/s), "
                f"first epoch {hist[0]['epoch_seconds']:.1f} s"
            )
    base = statistics.mean(times[next(iter(variants))])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(sys.argv),
        "epoch_seconds": times,
        "first_epoch_seconds": first,
        "mean_seconds": {n: statistics.mean(t) for n, t in times.items()},
        "speedup_vs_first": {n: base / statistics.mean(t) for n, t in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for n in variants:
        print(f"{n}: {result['mean_seconds'][n]:.1f} s per epoch, {result['speedup_vs_first'][n]:.2f}x")


if __name__ == "__main__":
    main()
