"""Train a skin-disease classifier with Accelerate: DDP, mixed precision and dynamo from YAML.

Launch settings (processes, precision, compile) come only from ``accelerate_configs/*.yaml``;
hyper-parameters from the recipe config and flags (defaults < --config YAML < flags).

    # CPU demo on the embedded synthetic set (a few minutes), as `make demo` runs it
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/train.py --config recipes/configs/demo.yaml

    # The seed's recipe: EfficientNet-B3, 4 GPUs, fp16 DDP, batch 64 per GPU
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/train.py \
        --config recipes/configs/seed_b3.yaml --data_dir /data/massive-skin-disease

    # One GPU, bf16; real dermoscopy images split by lesion
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/train.py \
        --config recipes/configs/isic8.yaml

    # DDP on CPU with two real gloo ranks (for testing)
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml \
        --mixed_precision no recipes/train.py --model test_efficientnet --no_pretrained

    # Resume after a crash
    accelerate launch ... recipes/train.py ... --resume_from_checkpoint latest
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from _cli import parse_args, run
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from skinacc.callbacks import EarlyStopping, build_plateau_scheduler, current_lr
from skinacc.checkpoint import CheckpointError, load_checkpoint, resolve_resume_path, save_checkpoint
from skinacc.config import (
    DataArguments,
    LoggingArguments,
    ModelArguments,
    TrainArguments,
    config_to_dict,
    save_config,
)
from skinacc.data import paths_of
from skinacc.engine import TrainState, assert_ranks_agree, evaluate, train_one_epoch
from skinacc.hub import export_for_hub, push_folder_to_hub, save_timm_folder
from skinacc.metrics import compute_all
from skinacc.metrics.report import EVAL_PLOTS, format_metrics_table, scalar_metrics, write_evaluation
from skinacc.pipeline import build_training
from skinacc.plots import plot_training_curves
from skinacc.tracking import (
    format_epoch_line,
    launch_info,
    log_artifact,
    log_evaluation,
    log_images,
    prepare_wandb,
    run_identity,
    wandb_run,
    write_history,
    write_json,
)

logger = logging.getLogger("skinacc.train")


def main(argv: list[str] | None = None) -> dict:
    data_args, model_args, args, log_args = parse_args(
        (DataArguments, ModelArguments, TrainArguments, LoggingArguments), argv, description=__doc__
    )
    out = Path(args.output_dir)
    prepare_wandb(log_args.report_to)  # before the tracker starts: offline instead of a login prompt
    accelerator = Accelerator(
        gradient_accumulation_steps=args.grad_accum_steps,
        log_with=None if log_args.report_to == "none" else log_args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # Seedable sampler: the shuffle order is a function of (seed, epoch), so a resume is exact.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        step_scheduler_with_optimizer=False,
    )
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    set_seed(args.seed)

    pieces = build_training(accelerator, data_args, model_args, args)
    data, ds, model, optimizer = pieces.data, pieces.datasets, pieces.model, pieces.optimizer
    weights, data_cfg, normalizer = pieces.weights, pieces.data_cfg, pieces.normalizer
    loss_fn, train_tf = pieces.loss_fn, pieces.train_transform
    train_loader, val_loader, test_loader = pieces.train_loader, pieces.val_loader, pieces.test_loader
    if not len(ds["validation"]):
        raise ValueError(
            f"--val_size={data_args.val_size}: the validation split is empty, but ReduceLROnPlateau, early stopping and the best-model choice need one"
        )
    # Not prepared on purpose: see skinacc.callbacks (accelerate would step it once per process).
    scheduler = build_plateau_scheduler(optimizer, args.plateau_factor, args.plateau_patience, args.min_lr)
    stopper = EarlyStopping(args.early_stopping_patience, args.early_stopping_min_delta)
    state = TrainState(world_size=accelerator.num_processes, process_index=accelerator.process_index)
    accelerator.register_for_checkpointing(scheduler, stopper, state)

    launch = launch_info(accelerator)
    identity = run_identity(model_args.model, launch, data.report.source, model_args.channels_last)
    manifest_id = {"model": model_args.model, "class_names": data.class_names}
    if args.resume_from_checkpoint:
        path = resolve_resume_path(args.resume_from_checkpoint, out / "checkpoints")
        load_checkpoint(accelerator, path, manifest_id)
        if state.batch_in_epoch and state.saved_world_size != accelerator.num_processes:
            raise CheckpointError(
                f"--resume_from_checkpoint={path}: saved mid-epoch with {state.saved_world_size} processes; resume with the same number (now {accelerator.num_processes})"
            )
        accelerator.print(
            f"resumed from {path}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}"
        )

    extra = {
        "launch": launch,
        "run": identity,
        "resolved": {
            "weights": weights.describe(),
            "data_config": data_cfg.to_dict(),
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "global_batch_size": args.batch_size * accelerator.num_processes * args.grad_accum_steps,
            "data_workers": pieces.workers,
        },
    }
    if accelerator.is_main_process:
        save_config(out / "config.yaml", data_args, model_args, args, log_args, extra=extra)
        data.report.save(out / "data_report.json")
    if log_args.report_to != "none":
        cfg = config_to_dict(data_args, model_args, args, log_args) | extra
        init = {
            "wandb": {
                "name": log_args.run_name or identity["name"],
                "group": log_args.run_group or identity["group"],
                "tags": identity["tags"] + (log_args.tags or []),
                "dir": str(out),
                "job_type": "train",
            }
        }
        accelerator.init_trackers(log_args.project, config=cfg, init_kwargs=init)

    def checkpoint() -> None:
        state.snapshot(accelerator)
        manifest = manifest_id | {
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "global_step": state.global_step,
            "world_size": accelerator.num_processes,
        }
        save_checkpoint(
            accelerator, out / "checkpoints", state.global_step, manifest, args.keep_last_checkpoints
        )

    def on_step(st: TrainState, loss: torch.Tensor) -> None:
        if log_args.report_to != "none" and st.global_step % args.log_every_n_steps == 0:
            accelerator.log(
                {
                    "train/step_loss": accelerator.reduce(loss, "mean").item(),
                    "train/lr": current_lr(optimizer),
                },
                step=st.global_step,
            )
        if args.checkpoint_every_n_steps and st.global_step % args.checkpoint_every_n_steps == 0:
            checkpoint()

    while state.epoch < args.epochs and not stopper.should_stop:
        epoch = state.epoch
        train_loader.set_epoch(epoch)
        train_tf.set_epoch(epoch)
        loader = (
            accelerator.skip_first_batches(train_loader, state.batch_in_epoch)
            if state.batch_in_epoch
            else train_loader
        )
        tr = train_one_epoch(
            accelerator,
            model,
            loader,
            optimizer,
            loss_fn,
            normalizer,
            state,
            max_batches=args.max_steps_per_epoch,
            max_grad_norm=args.max_grad_norm,
            on_step=on_step,
            desc=f"epoch {epoch + 1}",
        )
        val = evaluate(accelerator, model, val_loader, normalizer, desc="validate")
        assert_ranks_agree(accelerator, val.loss, "validation loss")
        val_metrics = (
            compute_all(val.labels, val.probs, data.class_names, top_k=()) if len(val.labels) else {}
        )
        lr = current_lr(optimizer)
        scheduler.step(val.loss)  # same gathered value on every rank: same decision everywhere
        improved = stopper.step(val.loss, epoch)
        record = {
            "epoch": epoch,
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "val_balanced_accuracy": val_metrics.get("balanced_accuracy", float("nan")),
            "val_macro_f1": val_metrics.get("macro_f1", float("nan")),
            "val_roc_auc_macro": val_metrics.get("roc_auc_macro", float("nan")),
            "val_ece": val_metrics.get("ece", float("nan")),
            "val_images": len(val.labels),
            "lr": lr,
            "images_per_sec": tr["images_per_sec"],
            "data_wait_pct": tr["data_wait_pct"],
            "step_time_ms": tr["step_time_ms"],
            "epoch_seconds": tr["seconds"],
            "peak_mem_mb": tr["peak_mem_mb"],
            "global_step": state.global_step,
            "is_best": improved,
        }
        state.history.append(record)
        if improved and accelerator.is_main_process:
            meta = {
                "skinacc.json": json.dumps(
                    {
                        "epoch": epoch,
                        "val_loss": val.loss,
                        "val_accuracy": val.accuracy,
                        "weights": weights.describe(),
                    },
                    indent=2,
                )
            }
            save_timm_folder(
                accelerator.unwrap_model(model, keep_torch_compile=False),
                out / "best",
                data.class_names,
                data_cfg,
                meta,
            )
        state.epoch += 1
        state.start_epoch()
        checkpoint()
        accelerator.print(format_epoch_line(record, args.epochs))
        if accelerator.is_main_process:
            write_history(out, state.history)
        accelerator.log({f"epoch/{k}": float(v) for k, v in record.items()}, step=state.global_step)
    if stopper.should_stop:
        accelerator.print(
            f"early stopping: no val_loss improvement for {stopper.bad_epochs} epochs (best {stopper.best:.4f} at epoch {stopper.best_epoch + 1})"
        )

    metrics: dict = {}
    summary = {
        "best_epoch": stopper.best_epoch,
        "best_val_loss": stopper.best,
        "epochs_run": state.epoch,
        "stopped_early": stopper.should_stop,
        "launch": launch,
    }
    accelerator.wait_for_everyone()
    if args.eval_test and len(ds["test"]) and (out / "best" / "model.safetensors").is_file():
        from safetensors.torch import load_file

        accelerator.unwrap_model(model, keep_torch_compile=False).load_state_dict(
            load_file(str(out / "best" / "model.safetensors"))
        )
        test = evaluate(accelerator, model, test_loader, normalizer, tta_flip=args.tta_flip, desc="test")
        summary |= {"test_loss": test.loss, "test_images": len(test.labels)}
        if accelerator.is_main_process:
            extra = {
                "model": model_args.model,
                "split": "test",
                "checkpoint": "best",
                "best_epoch": stopper.best_epoch,
                "tta_flip": args.tta_flip,
            }
            metrics = write_evaluation(
                out / "eval_test",
                test.labels,
                test.probs,
                data.class_names,
                paths_of(data.dataset["test"], test.sample_ids),
                extra,
            )
            summary |= {f"test_{k}": v for k, v in scalar_metrics(metrics).items() if k != "num_samples"}
            accelerator.print(
                format_metrics_table(metrics, f"test split, best checkpoint (epoch {stopper.best_epoch + 1})")
            )
            accelerator.log(
                {f"test/{k}": v for k, v in scalar_metrics(metrics).items()}, step=state.global_step
            )
    if accelerator.is_main_process:
        write_json(out / "summary.json", summary)
        if state.history:
            plot_training_curves(state.history, out / "training_curves.png")
        wb = wandb_run(accelerator)
        log_images(
            wb,
            {
                "plots/training_curves": out / "training_curves.png",
                **{f"plots/test_{p.removesuffix('.png')}": out / "eval_test" / p for p in EVAL_PLOTS},
            },
        )
        if metrics:
            log_evaluation(wb, metrics, "test")
        if log_args.log_model and (out / "best").is_dir():
            log_artifact(
                wb,
                out / "best",
                f"{identity['name']}-best",
                "model",
                metadata={k: v for k, v in summary.items() if k != "launch"},
                aliases=["best"],
            )
        if log_args.push_to_hub:
            folder = export_for_hub(out, out / "hub", log_args.hub_model_id)
            accelerator.print(
                f"pushed {folder} to the Hub: {push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)}"
            )
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    run(main)
