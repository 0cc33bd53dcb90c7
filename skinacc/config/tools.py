"""Options of the data, comparison and measurement commands: plots, compare-runs, prepare-shards, audit,
profile, benchmark-throughput and benchmark-loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from skinacc.config.fields import option

__all__ = [
    "AuditArguments",
    "CompareArguments",
    "LoadingBenchArguments",
    "PlotArguments",
    "ProfileArguments",
    "ShardArguments",
    "ThroughputArguments",
]

#: Values of the throughput benchmark's on/off list options.
ON_OFF = {"off": False, "on": True}

#: The data-loading strategies ``skinacc benchmark-loading`` compares (``skinacc.bench.loading``).
LOADER_STRATEGIES = (
    "torchvision_imagefolder",
    "hf_imagefolder_plain",
    "skinacc",
    "skinacc_full_decode",
    "single_process",
    "manual_split",
    "preresized_cache",
    "gpu_decode",
)


@dataclass
class PlotArguments:
    """Which run to redraw."""

    run_dir: str = option("A skinacc output directory.", default="outputs/demo")

    def validate(self) -> list[str]:
        return [] if Path(self.run_dir).is_dir() else [f"--run_dir={self.run_dir!r}: no such directory"]


@dataclass
class CompareArguments:
    """Which runs to compare."""

    runs: list[str] = option(
        "Output dirs, offline W&B run dirs, or entity/project/run_id paths.", default_factory=list
    )
    output_dir: str = option("Where the table and plots go.", default="outputs/compare")
    paired_split: str | None = option(
        "Also compare the first run with each other one on the same images of this evaluated "
        "split (e.g. test: each run's eval_test/predictions.csv): the difference of every headline "
        "metric with a bootstrap CI that resamples whole groups (the first run's --group_column).",
        default=None,
    )
    bootstrap: int = option("Resamples of the paired comparison.", default=2000)

    def validate(self) -> list[str]:
        p = [] if self.runs else ["--runs: give at least one run"]
        if self.paired_split and len(self.runs) < 2:
            p.append("--paired_split compares runs: give at least two --runs")
        if self.bootstrap < 1:
            p.append(f"--bootstrap={self.bootstrap}: must be >= 1")
        return p


@dataclass
class ShardArguments:
    """Where the shards go and how they are cut."""

    output_dir: str = option("New folder for the shards (must not exist).", default="")
    shard_size: int = option(
        "Shorter side of the stored images, in pixels (>= training's resize size).", default=256
    )
    images_per_shard: int = option("About this many images per Parquet file.", default=1000)
    shard_multiple: int = option("Round each split's shard count up to a multiple of this.", default=8)
    shuffle_seed: int = option("Seed of the training split's stored order.", default=0)
    jpeg_quality: int = option("JPEG quality of the stored images (1-100).", default=90)
    num_proc: int | None = option(
        "Processes that decode and resize (default: the cores less one).", default=None
    )
    push_to_hub: bool = option("Upload the folder as a Hub dataset.", default=False)
    hub_dataset_id: str | None = option("<user-or-org>/<name> of the dataset repo.", default=None)
    hub_private: bool = option("Create the dataset repo private.", default=False)

    def validate(self) -> list[str]:
        p = []
        if not self.output_dir:
            p.append("--output_dir: give a new folder for the shards")
        if self.shard_size < 32:
            p.append(f"--shard_size={self.shard_size}: must be at least 32")
        for name in ("images_per_shard", "shard_multiple"):
            if getattr(self, name) < 1:
                p.append(f"--{name}={getattr(self, name)}: must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            p.append(f"--jpeg_quality={self.jpeg_quality}: must be in 1..100")
        if self.push_to_hub and not self.hub_dataset_id:
            p.append("--push_to_hub needs --hub_dataset_id=<user-or-org>/<name>")
        return p


@dataclass
class AuditArguments:
    """What the audit looks for and where its results go."""

    output_dir: str = option("Folder for the audit's files.", default="outputs/audit")
    duplicates: bool = option("Find exact and near-duplicates.", default=True)
    radius: int = option(
        "Hamming radius (bits of 63) of perceptual-hash candidates, at most 15; larger finds "
        "more crops and checks more candidates.",
        default=13,
    )
    threshold: float = option(
        "High-pass detail correlation (at 128 px, aligned) a candidate needs to count as a "
        "near-duplicate; copies score above 0.8, different photographs of look-alike lesions below 0.3.",
        default=0.6,
    )
    max_hue_degrees: float = option(
        "Largest mean-colour hue difference between near-duplicates.", default=6.0
    )
    label_issues: bool = option("Rank suspect labels with cleanlab.", default=True)
    predictions: str | None = option(
        "A run's predictions.csv: its probabilities rank the labels (default: k-fold probe).", default=None
    )
    embedding_model: str = option(
        "timm model whose features the linear probe uses.", default="tf_efficientnet_lite0"
    )
    embedding_weights: str | None = option(
        "Its weights (as --pretrained_weights of training).", default="pypi-lite0"
    )
    embedding_size: int = option("Image side for the features.", default=160)
    folds: int = option("Folds of the linear probe.", default=5)
    quality: bool = option("Flag image-quality issues with cleanvision.", default=True)
    workers: int | None = option(
        "Processes for hashing, loading and quality checks (default: all cores).", default=None
    )
    max_grid: int = option("Groups (and twice as many suspects) drawn in the PNGs.", default=12)

    def validate(self) -> list[str]:
        p = []
        if not 0 <= self.radius <= 15:
            p.append(f"--radius={self.radius}: must be in 0..15 (bits of the 63-bit perceptual hash)")
        if not 0 < self.threshold <= 1:
            p.append(f"--threshold={self.threshold}: must be in (0, 1]")
        if self.folds < 2:
            p.append(f"--folds={self.folds}: must be >= 2")
        if self.predictions and not Path(self.predictions).is_file():
            p.append(f"--predictions={self.predictions!r}: no such file")
        return p


@dataclass
class ProfileArguments:
    """How much to profile."""

    profile_dir: str = option("Where traces, summary and plots go.", default="outputs/profile")
    warmup_steps: int = option(
        "Steps run before profiling (cuDNN autotune, compile, worker start-up).", default=3
    )
    profile_steps: int = option("Steps recorded.", default=5)
    record_shapes: bool = option("Record operator input shapes (bigger traces).", default=False)

    def validate(self) -> list[str]:
        return [f"--{k}: must be >= 1" for k in ("profile_steps",) if getattr(self, k) < 1] + (
            [f"--warmup_steps={self.warmup_steps}: must be >= 0"] if self.warmup_steps < 0 else []
        )


@dataclass
class ThroughputArguments:
    """What to measure."""

    model: str = option(
        "timm model (random weights: speed does not depend on them).", default="efficientnet_b3"
    )
    num_classes: int = option("Classifier size (the seed's 35 classes).", default=35)
    image_size: int = option("Input side in pixels.", default=224)
    batch_sizes: list[int] = option(
        "Per-process batch sizes (the seed's 64 and a larger one).", default_factory=lambda: [64, 256]
    )
    precisions: list[str] = option("fp32, fp16, bf16.", default_factory=lambda: ["fp32", "fp16", "bf16"])
    channels_last: list[str] = option(
        "Memory formats to try: off (NCHW), on (NHWC).", default_factory=lambda: ["off", "on"]
    )
    compile: list[str] = option("torch.compile settings to try: off, on.", default_factory=lambda: ["off"])
    modes: list[str] = option(
        "train (forward+backward+Adam) and/or infer.", default_factory=lambda: ["train", "infer"]
    )
    steps: int = option("Timed steps per variant.", default=20)
    warmup: int = option("Untimed steps per variant (autotuning, compilation).", default=5)
    compute: bool = option(
        "Run the compute sweep on random tensors (--compute false with --e2e_data_dir: end-to-end rows only).",
        default=True,
    )
    e2e_data_dir: str | None = option(
        "JPEG image folder: also measure end-to-end training through skinacc's pipeline.", default=None
    )
    e2e_batches: int = option(
        "Timed batches of the end-to-end measurement (after 5 warm-up batches; small folders are read for several epochs).",
        default=30,
    )
    e2e_preresize: bool = option(
        "End-to-end run on the pre-resized cache (--preresize of training).", default=False
    )
    e2e_workers: int = option("DataLoader workers per process for the end-to-end measurement.", default=8)
    e2e_channels_last: bool = option(
        "Channels-last model and batches in the end-to-end runs (training's --channels_last).", default=True
    )
    output_dir: str = option("Results and plots.", default="outputs/bench_throughput")
    launch_processes: list[int] | None = option(
        "Driver mode: launch this script under each process count and merge.", default=None
    )
    launch_config: str = option(
        "accelerate config for driver mode (--num_processes is overridden).",
        default="accelerate_configs/1gpu_fp32.yaml",
    )
    report_to: str = option("'wandb' also logs the results table and plots to W&B.", default="none")
    project: str = option("W&B project.", default="skinacc")
    launch_cpu: bool = option(
        "Driver mode on CPU: ACCELERATE_USE_CPU=1 and --mixed_precision no (gloo ranks).", default=False
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
        if self.launch_processes and not Path(self.launch_config).is_file():
            p.append(f"--launch_config={self.launch_config!r}: no such file")
        if not self.compute and not self.e2e_data_dir:
            p.append("--compute false: nothing to measure without --e2e_data_dir")
        if self.e2e_data_dir and not Path(self.e2e_data_dir).is_dir():
            p.append(f"--e2e_data_dir={self.e2e_data_dir!r}: no such folder")
        if self.e2e_batches < 1:
            p.append(f"--e2e_batches={self.e2e_batches}: must be >= 1")
        return p


@dataclass
class LoadingBenchArguments:
    """Options of the data-loading benchmark."""

    data_dir: str | None = option(
        "Image folder of small JPEGs (default: the ISIC set if present, else synthetic).", default=None
    )
    output_dir: str = option("Where results and plots go.", default="outputs/bench_loading")
    image_sets: list[str] = option(
        "small (as found) and/or large (upscaled to --large_size).",
        default_factory=lambda: ["small", "large"],
    )
    large_dir: str | None = option(
        "Folder of large JPEGs to use as they are (default: the small set upscaled to --large_size, made once).",
        default=None,
    )
    large_size: int = option("Width of the upscaled large JPEGs.", default=1200)
    large_per_class: int = option("Images per class in the large set.", default=40)
    strategies: list[str] = option(
        f"Subset of {LOADER_STRATEGIES}.", default_factory=lambda: list(LOADER_STRATEGIES)
    )
    workers: int = option("DataLoader workers (and processes for manual_split).", default=2)
    batch_size: int = option("Batch size.", default=64)
    image_size: int = option("Crop size (resize = image_size / 0.875).", default=224)
    max_images: int = option("Images timed per strategy and set.", default=512)
    repeats: int = option("Interleaved timed runs per strategy (median reported).", default=3)
    report_to: str = option("'wandb' also logs the results table and plots to W&B.", default="none")
    project: str = option("W&B project.", default="skinacc")
    device: str = option(
        "Where batches are finished.", default="cuda" if torch.cuda.is_available() else "cpu"
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
