"""Evaluate a trained classifier on a split: metrics, per-class table, predictions and plots.

    # A skinacc run directory (its best/ model, and the data options it was trained with)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --split test

    # ... and log it to W&B (metrics, per-class table, confusion matrix, plots)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --report_to wandb

    # A timm folder or Hub model on an image folder, with flip test-time augmentation, 4 GPUs
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \
        --model hf-hub:org/skinacc-b3 --data_dir /data/massive-skin-disease --split test --tta_flip

Writes to ``--output_dir`` (default ``<run>/eval_<split>``): metrics.json, per_class.csv,
predictions.csv (path, true, predicted, probabilities), confusion_matrix[_normalized].png,
roc_curves.png, per_class.png, reliability.png; prints a summary table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from _cli import flag_value, parse_args, run
from accelerate import Accelerator

from skinacc.config import DataArguments, LoggingArguments
from skinacc.data import (
    BatchNormalizer,
    build_dataloader,
    default_num_workers,
    load_skin_dataset,
    paths_of,
    set_transforms,
)
from skinacc.engine import evaluate
from skinacc.hub import load_model
from skinacc.metrics.report import EVAL_PLOTS, format_metrics_table, scalar_metrics, write_evaluation
from skinacc.tracking import log_evaluation, log_images, prepare_wandb, wandb_run


@dataclass
class EvalArguments:
    """What to evaluate and where the results go."""

    model: str = field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )
    split: Literal["train", "validation", "test"] = field(
        default="test", metadata={"help": "Split to evaluate."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Results folder (default: <run>/eval_<split>, or outputs/eval_<split>)."},
    )
    batch_size: int = field(default=128, metadata={"help": "Batch size per process."})
    tta_flip: bool = field(
        default=False, metadata={"help": "Average predictions over each image and its horizontal mirror."}
    )

    def validate(self) -> list[str]:
        return [f"--batch_size={self.batch_size}: must be >= 1"] if self.batch_size < 1 else []


def run_defaults(model: str | None) -> dict:
    """Data options of the training run behind ``model`` (so the same split is rebuilt)."""
    cfg = Path(model or "") / "config.yaml"
    if model and cfg.is_file():
        return dict(yaml.safe_load(cfg.read_text()).get("data", {}))
    return {}


def main(argv: list[str] | None = None) -> dict:
    args, data_args, log_args = parse_args(
        (EvalArguments, DataArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults={"report_to": "none", **run_defaults(flag_value(argv, "--model"))},
    )
    prepare_wandb(log_args.report_to)
    accelerator = Accelerator(log_with=None if log_args.report_to == "none" else log_args.report_to)
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    run_dir = Path(args.model)
    out = Path(
        args.output_dir
        or (run_dir / f"eval_{args.split}" if run_dir.is_dir() else f"outputs/eval_{args.split}")
    )

    with accelerator.main_process_first():
        data = load_skin_dataset(data_args)
    model, label_names, data_cfg = load_model(args.model)
    unknown = [c for c in data.class_names if c not in label_names]
    if unknown:
        raise ValueError(
            f"--model={args.model!r} does not know the data's classes {unknown}; it was trained on {label_names}"
        )
    # Data label ids -> the model's output columns (class sets may be ordered differently).
    to_model = np.array([label_names.index(c) for c in data.class_names])

    split = set_transforms({args.split: data.dataset[args.split]}, data_cfg)[args.split]
    loader = build_dataloader(
        split,
        args.batch_size,
        train=False,
        num_workers=default_num_workers(data_args.num_workers, accelerator.num_processes),
        pin_memory=data_args.pin_memory,
        persistent_workers=False,
    )
    model, loader = accelerator.prepare(model, loader)
    if log_args.report_to != "none":
        name = log_args.run_name or f"eval-{Path(args.model).name}-{args.split}"
        init = {
            "wandb": {
                "name": name,
                "group": log_args.run_group,
                "tags": ["eval", args.split, *(log_args.tags or [])],
                "dir": str(out),
                "job_type": "eval",
            }
        }
        accelerator.init_trackers(
            log_args.project,
            config={"eval": vars(args), "data": vars(data_args), "label_names": label_names},
            init_kwargs=init,
        )
    res = evaluate(
        accelerator,
        model,
        loader,
        BatchNormalizer(data_cfg, accelerator.device),
        tta_flip=args.tta_flip,
        desc=args.split,
    )
    labels = to_model[res.labels]
    metrics = {}
    if accelerator.is_main_process:
        paths = paths_of(data.dataset[args.split], res.sample_ids)
        extra = {
            "model": args.model,
            "split": args.split,
            "tta_flip": args.tta_flip,
            "data_source": data.report.source,
            "images_per_sec": res.images_per_sec,
            "num_processes": accelerator.num_processes,
        }
        metrics = write_evaluation(out, labels, res.probs, label_names, paths, extra)
        print(
            format_metrics_table(
                metrics, f"{args.model} on {args.split}" + (" (flip TTA)" if args.tta_flip else "")
            )
        )
        print(f"wrote {out}/metrics.json, per_class.csv, predictions.csv and plots")
        accelerator.log({f"{args.split}/{k}": v for k, v in scalar_metrics(metrics).items()})
        wb = wandb_run(accelerator)
        log_evaluation(wb, metrics, args.split)
        log_images(wb, {f"plots/{p.removesuffix('.png')}": out / p for p in EVAL_PLOTS})
    accelerator.end_training()
    return scalar_metrics(metrics)


if __name__ == "__main__":
    run(main)
