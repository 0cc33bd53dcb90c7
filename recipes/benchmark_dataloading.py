"""Benchmark data-loading strategies side by side: same files, same transforms, same workers.

Small JPEGs are the real ISIC set (180 px) when present, else the synthetic set; large JPEGs are the
same images upscaled to 1200 px (the Kaggle originals are far larger than the 256 px the model sees).

    python recipes/benchmark_dataloading.py --output_dir outputs/bench_loading
    python recipes/benchmark_dataloading.py --data_dir ../shared/data/isic8-dermoscopy --workers 2 --max_images 768

Writes ``loading.json``, ``loading.csv`` and ``loading.png`` to ``--output_dir``.
"""

from __future__ import annotations

import platform
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
from _cli import parse_args, run

from skinacc.bench import LOADER_STRATEGIES, make_large_jpegs, run_loader_benchmark
from skinacc.config import default_cache_dir
from skinacc.data import SyntheticSpec, generate_synthetic_dataset, resolve_data_config
from skinacc.plots import plot_loader_benchmark
from skinacc.tracking import log_results_run, write_rows

ISIC8 = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic8-dermoscopy"


@dataclass
class LoadingBenchArguments:
    """Options of the data-loading benchmark."""

    data_dir: str | None = field(
        default=None,
        metadata={"help": "Image folder of small JPEGs (default: the ISIC set if present, else synthetic)."},
    )
    output_dir: str = field(default="outputs/bench_loading", metadata={"help": "Where results and plots go."})
    image_sets: list[str] = field(
        default_factory=lambda: ["small", "large"],
        metadata={"help": "small (as found) and/or large (upscaled to --large_size)."},
    )
    large_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of large JPEGs to use as they are (default: the small set upscaled to --large_size, made once)."
        },
    )
    large_size: int = field(default=1200, metadata={"help": "Width of the upscaled large JPEGs."})
    large_per_class: int = field(default=40, metadata={"help": "Images per class in the large set."})
    strategies: list[str] = field(
        default_factory=lambda: list(LOADER_STRATEGIES), metadata={"help": f"Subset of {LOADER_STRATEGIES}."}
    )
    workers: int = field(default=2, metadata={"help": "DataLoader workers (and processes for manual_split)."})
    batch_size: int = field(default=64, metadata={"help": "Batch size."})
    image_size: int = field(default=224, metadata={"help": "Crop size (resize = image_size / 0.875)."})
    max_images: int = field(default=512, metadata={"help": "Images timed per strategy and set."})
    repeats: int = field(
        default=3, metadata={"help": "Interleaved timed runs per strategy (median reported)."}
    )
    report_to: str = field(
        default="none", metadata={"help": "'wandb' also logs the results table and plots to W&B."}
    )
    project: str = field(default="skinacc", metadata={"help": "W&B project."})
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu",
        metadata={"help": "Where batches are finished."},
    )

    def validate(self) -> list[str]:
        p = [
            f"--strategies: unknown {s!r} (choose from {LOADER_STRATEGIES})"
            for s in self.strategies
            if s not in LOADER_STRATEGIES
        ]
        p += [
            f"--image_sets: unknown {s!r} (small, large)"
            for s in self.image_sets
            if s not in ("small", "large")
        ]
        p += [
            f"--{k}={getattr(self, k)!r}: no such folder"
            for k in ("data_dir", "large_dir")
            if getattr(self, k) and not Path(getattr(self, k)).is_dir()
        ]
        if self.workers < 1:
            p.append(f"--workers={self.workers}: must be >= 1")
        return p


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((LoadingBenchArguments,), argv, description=__doc__)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    small = (
        Path(args.data_dir)
        if args.data_dir
        else (
            ISIC8
            if (ISIC8 / "labels.csv").is_file()
            else generate_synthetic_dataset(SyntheticSpec(8, 60, 180), default_cache_dir())
        )
    )
    cfg = resolve_data_config(None, image_size=args.image_size)
    results = []
    for image_set in args.image_sets:
        if image_set == "small":
            root = small
        elif args.large_dir:
            root = Path(args.large_dir)
        else:  # keyed on the source, size and count, so later runs reuse it
            key = zlib.crc32(f"{Path(small).resolve()}|{args.large_per_class}".encode())
            root = make_large_jpegs(
                small,
                Path(tempfile.gettempdir()) / f"skinacc-large-{args.large_size}-{key:08x}",
                args.large_size,
                args.large_per_class,
            )
        for r in run_loader_benchmark(
            root,
            cfg,
            args.strategies,
            args.batch_size,
            args.workers,
            args.max_images,
            args.device,
            args.repeats,
        ):
            results.append({"image_set": image_set, "root": str(root), **r})
            print(
                f"{image_set:5s} {r['strategy']:24s} "
                + (f"{r['images_per_sec']:8.1f} img/s" if "images_per_sec" in r else r.get("skipped", ""))
                + (f"  ({r['vs_imagefolder']:.2f}x ImageFolder)" if "vs_imagefolder" in r else "")
            )
    meta = {
        "machine": platform.node(),
        "cpu_count": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "date": str(date.today()),
        "device": args.device,
        "args": vars(args),
    }
    write_rows(out / "loading", results, meta)
    plot_loader_benchmark(results, out / "loading.png")
    log_results_run(
        args.report_to, args.project, "benchmark_dataloading", results, [out / "loading.png"], meta, out
    )
    print(f"wrote {out / 'loading.json'}, loading.csv, loading.png")
    return results


if __name__ == "__main__":
    run(main)
