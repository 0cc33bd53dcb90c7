"""Evaluate a trained classifier on a split or on any labelled image folder: metrics, per-class table,
predictions and plots.

    # A skinacc run directory (its best/ model, and the data options it was trained with)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --split test

    # ... and log it to W&B (metrics, per-class table, confusion matrix, plots)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --report_to wandb

    # Any checkpoint on an external labelled folder (<root>/<Class>/*.jpg): every image is test data,
    # classes are matched by name, the folder may lack some of the model's classes
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py \
        --model outputs/dermoscopy --data_dir /data/other-clinic

    # ... with Grad-CAM grids: per class, the 8 most confident errors and 8 correct cases (W&B images too)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --explain 8

    # A timm folder or Hub model with dihedral test-time augmentation, 4 GPUs
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \
        --model hf-hub:org/skinacc-b3 --data_dir /data/massive-skin-disease --split test --tta dihedral

    # Pre-resized shards (recipes/prepare_shards.py), streamed: each rank reads its own shards
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \
        --model outputs/b3 --dataset_name /shared/msd-shards --streaming --split test

    # At a larger size than the model was trained at (a CNN trained on random-resized crops often
    # scores better a little above it; the crop ratio is kept unless --resize_size is given too)
    accelerate launch ... recipes/evaluate.py --model outputs/dermoscopy --image_size 192

    # A long evaluation that stopped: continue it (results so far are in <output_dir>/predictions.partial)
    accelerate launch ... recipes/evaluate.py --model outputs/b3 --data_dir /data/archive --resume

With a run directory and no data flag, the run's own data options rebuild its split (default: test).
With --data_dir or --dataset_name the source is external and, unless --split says otherwise, all of
its images are evaluated. Test-time augmentation and temperature default to the model's own (stored by
``train.py --tta ... --calibrate``), and so do the input sizes unless --image_size/--resize_size are given.

Writes to ``--output_dir`` (default ``<run>/eval_<split>``, or ``<run>/eval_<folder name>`` for an
external folder): metrics.json, per_class.csv, predictions.csv (path, true, predicted, probabilities),
confusion_matrix[_normalized].png, roc_curves.png, per_class.png, reliability.png, and with --explain N
explain/<class>.png; prints a summary table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
import torch
from _cli import parse_args, run
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from datasets import concatenate_datasets

from skinacc.calibration import probs_from_logits
from skinacc.config import DataArguments, LoggingArguments, read_run_config
from skinacc.console import setup_logging
from skinacc.data import (
    BatchNormalizer,
    ImageTransform,
    build_dataloader,
    default_num_workers,
    load_skin_dataset,
    paths_of,
    set_transforms,
)
from skinacc.data.streaming import StreamingLoader, load_streaming, stream_paths
from skinacc.engine import PredictionLog, evaluate
from skinacc.explain import CAM_METHODS
from skinacc.hub import load_model
from skinacc.metrics.report import EVAL_PLOTS, format_metrics_table, scalar_metrics, write_evaluation
from skinacc.tracking import log_evaluation, log_images, start_tracking, wandb_run


@dataclass
class EvalArguments:
    """What to evaluate and where the results go."""

    model: str = field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )
    split: Literal["train", "validation", "test", "all"] | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate; 'all' takes every image. Default: 'test' of the run's own data, "
            "'all' of a source given with --data_dir/--dataset_name."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Results folder (default: <run>/eval_<split or folder name>, or outputs/eval_...)."
        },
    )
    batch_size: int = field(default=128, metadata={"help": "Batch size per process."})
    channels_last: bool = field(
        default=True,
        metadata={
            "help": "Channels-last model and batches: the same predictions (to float rounding), faster "
            "convolutions on CPU and tensor cores (BENCHMARKS.md)."
        },
    )
    tta: Literal["none", "flip", "dihedral"] | None = field(
        default=None,
        metadata={
            "help": "Test-time augmentation (average over the mirror, or the 8 flips/rotations). "
            "Default: the model's stored setting."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={"help": "Softmax temperature. Default: the model's calibrated one (1.0 if none)."},
    )

    explain: int = field(
        default=0,
        metadata={
            "help": "Per class, Grad-CAM grids of the N most confident errors and N most confident correct "
            "cases (explain/<class>.png; W&B images when tracking). 0: off. Needs skinacc[explain]."
        },
    )
    cam_layer: str | None = field(
        default=None,
        metadata={
            "help": "Layer to explain (a model.named_modules() name). Default: the last spatial feature map."
        },
    )
    cam_method: str = field(default="gradcam", metadata={"help": f"CAM method: {', '.join(CAM_METHODS)}."})
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue an evaluation that stopped: the images already in --output_dir's "
            "predictions.partial are kept, only the others are predicted."
        },
    )

    def validate(self) -> list[str]:
        p = [f"--batch_size={self.batch_size}: must be >= 1"] if self.batch_size < 1 else []
        if self.explain < 0:
            p.append(f"--explain={self.explain}: must be >= 0 (cases per class; 0 turns it off)")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        if self.temperature is not None and self.temperature <= 0:
            p.append(f"--temperature={self.temperature}: must be > 0")
        return p


#: Results written as they come (see skinacc.engine.PredictionLog); removed once the metrics are out.
PARTIAL = "predictions.partial"


def run_defaults(model: str | None) -> dict:
    """Data options of the training run behind ``model`` (so the same split is rebuilt).

    Not its sizes: those come with the model, and ``--image_size``/``--resize_size`` given here override them.
    """
    data = dict(read_run_config(model).get("data", {})) if model else {}
    return {k: v for k, v in data.items() if k not in ("image_size", "resize_size")}


def _is_external(data_args: DataArguments) -> bool:
    """A data source given by the user (flag or YAML, any spelling): none of the run's options apply."""
    return bool(data_args.data_dir or data_args.dataset_name)


def main(argv: list[str] | None = None) -> dict:
    given = {}

    def defaults(first: tuple) -> dict:
        # An external source takes none of the run's data options (groups, metadata, caps, ...); without
        # one, the run's own data options rebuild its split.
        args, data_args, _ = first
        given["external"] = _is_external(data_args)
        return {"report_to": "none", **({} if given["external"] else run_defaults(args.model))}

    args, data_args, log_args = parse_args(
        (EvalArguments, DataArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults=defaults,
        defaults_source="the trained run's run_config.yaml",
    )
    external = given["external"]
    split_name = args.split or ("all" if external else "test")
    accelerator = Accelerator(log_with=None if log_args.report_to == "none" else log_args.report_to)
    # Logs and warnings once per job (main process); progress bars off with --disable_tqdm/TQDM_DISABLE.
    setup_logging(accelerator.is_main_process, log_args.disable_tqdm)
    run_dir = Path(args.model)
    source = data_args.data_dir or data_args.dataset_name
    tag = Path(source).name if external and split_name == "all" else split_name
    out = Path(args.output_dir or (run_dir / f"eval_{tag}" if run_dir.is_dir() else f"outputs/eval_{tag}"))

    loaded = load_model(args.model)
    # The model's own sizes unless --image_size/--resize_size are given on the command line (as timm's
    # validate.py --img-size, the crop ratio kept): a CNN trained on random-resized crops often scores
    # better a little above its training size.
    if data_args.image_size or data_args.resize_size:
        cfg = loaded.data_cfg.at_size(
            data_args.image_size or loaded.data_cfg.image_size, data_args.resize_size
        )
        if cfg.resize_size < cfg.image_size:
            raise ValueError(
                f"--resize_size={cfg.resize_size}: must be >= the crop size {cfg.image_size} (--image_size)"
            )
        loaded = loaded._replace(data_cfg=cfg)
        accelerator.print(
            f"evaluating at {cfg.image_size} px (resize {cfg.resize_size}) instead of the model's own size"
        )
    if data_args.streaming and args.explain:
        raise ValueError("--explain reads chosen images back by row, which a stream cannot: drop --streaming")
    with accelerator.main_process_first():
        if data_args.streaming:
            data = load_streaming(data_args, known_classes=loaded.label_names)
        else:
            data = load_skin_dataset(data_args, known_classes=loaded.label_names)
    label_names = loaded.label_names
    unknown = [c for c in data.class_names if c not in label_names]
    if unknown:
        where = f"--data_dir={data_args.data_dir!r}" if data_args.data_dir else data.report.source
        raise ValueError(
            f"{where}: class(es) {unknown} unknown to --model={args.model!r}, which knows {label_names}; "
            "rename or remove those class folders"
        )
    # Data label ids -> the model's output columns (class sets may differ in order and size).
    to_model = np.array([label_names.index(c) for c in data.class_names])
    tta, temperature = args.tta or loaded.tta, args.temperature or loaded.temperature

    table = (
        concatenate_datasets([data.dataset[s] for s in data.dataset])
        if split_name == "all"
        else data.dataset[split_name]
    )
    # Results go to disk batch by batch (flat memory); --resume skips the images already there.
    log = PredictionLog(out / PARTIAL, len(label_names))
    settings = {"model": str(args.model), "split": split_name, "source": str(source), "tta": tta,
                "temperature": temperature, "image_size": loaded.data_cfg.image_size,
                "resize_size": loaded.data_cfg.resize_size}  # fmt: skip
    done = log.start(settings, args.resume) if accelerator.is_main_process else None
    done = set(broadcast_object_list([None if done is None else done.tolist()])[0])
    todo = table.filter(lambda sid: sid not in done, input_columns="sample_id") if done else table
    if done:
        accelerator.print(f"--resume: {len(done)} images already evaluated in {log.path}")
    workers = default_num_workers(data_args.num_workers, accelerator.num_processes)
    if args.channels_last:
        loaded.model.to(memory_format=torch.channels_last)  # in place, as training's --channels_last
    if data_args.streaming:  # each rank reads its share of the shards; padding rows are dropped
        size = (sum(data.sizes.values()) if split_name == "all" else data.sizes[split_name]) - len(done)
        loader = StreamingLoader(
            todo, ImageTransform(loaded.data_cfg, train=False), args.batch_size, size, train=False,
            workers=workers, device=accelerator.device, rank=accelerator.process_index,
            world_size=accelerator.num_processes,
        )  # fmt: skip
        model = accelerator.prepare(loaded.model)
    else:
        split = set_transforms({"eval": todo}, loaded.data_cfg)["eval"]
        loader = build_dataloader(
            split,
            args.batch_size,
            train=False,
            num_workers=workers,
            pin_memory=data_args.pin_memory,
            persistent_workers=False,
        )
        model, loader = accelerator.prepare(loaded.model, loader)
    config = {"eval": vars(args), "data": vars(data_args), "label_names": label_names}
    start_tracking(
        accelerator, log_args, config, out, "eval", f"eval-{Path(args.model).name}-{tag}", tags=["eval", tag]
    )

    def write(z: np.ndarray, y: np.ndarray, ids: np.ndarray) -> None:
        if accelerator.is_main_process:
            log.append(ids, y, probs_from_logits(z, temperature))

    remaining = size if data_args.streaming else len(todo)
    seconds = images_per_sec = 0.0
    if remaining:
        norm = BatchNormalizer(loaded.data_cfg, accelerator.device, channels_last=args.channels_last)
        res = evaluate(
            accelerator, model, loader, norm, tta=tta, temperature=temperature, desc=tag, on_batch=write,
            keep=False,
        )  # fmt: skip
        seconds, images_per_sec = res.seconds, res.images_per_sec
    metrics = {}
    if accelerator.is_main_process:
        sample_ids, data_labels, probs = log.read()
        res = SimpleNamespace(
            sample_ids=sample_ids, probs=probs, seconds=seconds, images_per_sec=images_per_sec
        )
        labels = to_model[data_labels]
        paths = stream_paths(table, sample_ids) if data_args.streaming else paths_of(table, sample_ids)
        extra = {
            "model": args.model,
            "split": split_name,
            "tta": tta,
            "temperature": temperature,
            "image_size": loaded.data_cfg.image_size,
            "resize_size": loaded.data_cfg.resize_size,
            "data_source": data.report.source + (f" ({data.report.root})" if data.report.root else ""),
            "classes_in_data": data.class_names,
            "images_per_sec": res.images_per_sec,
            "num_processes": accelerator.num_processes,
        }
        metrics = write_evaluation(out, labels, res.probs, label_names, paths, extra)
        log.remove()  # the results are in predictions.csv and metrics.json now
        missing = [c for c in label_names if c not in data.class_names]
        title = f"{args.model} on {tag}, tta {tta}, temperature {temperature:.3f}"
        print(format_metrics_table(metrics, title))
        if missing:
            print(
                f"classes of the model absent from the data (recall undefined, left out of balanced accuracy): {missing}"
            )
        print(f"wrote {out}/metrics.json, per_class.csv, predictions.csv and plots")
        accelerator.log({f"{tag}/{k}": v for k, v in scalar_metrics(metrics).items()})
        wb = wandb_run(accelerator)
        log_evaluation(wb, metrics, tag)
        log_images(wb, {f"plots/{p.removesuffix('.png')}": out / p for p in EVAL_PLOTS})
        if args.explain:
            from skinacc.explain import Explainer, write_case_grids

            # Rows of the evaluated table in the order of the gathered predictions.
            row_of = {int(s): i for i, s in enumerate(table["sample_id"])}
            images = table.select_columns(["image"])
            explainer = Explainer(
                accelerator.unwrap_model(model), loaded.data_cfg, args.cam_layer, args.cam_method, temperature
            )
            grids = write_case_grids(
                explainer,
                lambda r: images[row_of[int(res.sample_ids[r])]]["image"],  # read only the rows shown
                labels,
                res.probs,
                label_names,
                args.explain,
                out / "explain",
                args.batch_size,
            )
            print(f"wrote {len(grids)} Grad-CAM grids to {out / 'explain'} (layer {explainer.layer})")
            log_images(wb, {f"explain/{name}": path for name, path in grids.items()})
    accelerator.end_training()
    return scalar_metrics(metrics)


if __name__ == "__main__":
    run(main)
