"""Train a skin-disease classifier with Accelerate: DDP, mixed precision and dynamo from YAML.

Launch settings (processes, precision, compile) come only from ``accelerate_configs/*.yaml``;
hyper-parameters from the recipe config and flags (defaults < --config YAML < flags).

    # CPU demo on the embedded synthetic set (a few minutes), as `make demo` runs it
    accelerate launch -q --config_file accelerate_configs/cpu.yaml --num_cpu_threads_per_process 2 recipes/train.py --config recipes/configs/demo.yaml

    # The recommended dermoscopy recipe on real images split by lesion, one GPU in bf16; then the
    # final model on train + validation
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/train.py --config recipes/configs/dermoscopy.yaml
    accelerate launch --config_file accelerate_configs/1gpu_bf16.yaml recipes/train.py --config recipes/configs/dermoscopy.yaml \
        --final_fit --calibrate false --output_dir outputs/dermoscopy_final

    # The seed's recipe: EfficientNet-B3, 4 GPUs, fp16 DDP, batch 64 per GPU
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/train.py \
        --config recipes/configs/seed_b3.yaml --data_dir /data/massive-skin-disease

    # DDP on CPU with two real gloo ranks (for testing)
    ACCELERATE_USE_CPU=1 accelerate launch --config_file accelerate_configs/cpu_2proc.yaml \
        --mixed_precision no recipes/train.py --model test_efficientnet --no_pretrained

    # Stop with SIGTERM or Ctrl+C (a checkpoint is saved at the next step), then resume exactly there
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
from safetensors.torch import load_file

from skinacc.callbacks import build_selection, current_lr
from skinacc.checkpoint import Checkpointer
from skinacc.config import (
    RUN_CONFIG,
    DataArguments,
    LoggingArguments,
    ModelArguments,
    TrainArguments,
    config_to_dict,
    save_config,
)
from skinacc.engine import TrainState, assert_ranks_agree, calibrate_and_test, evaluate, train_one_epoch
from skinacc.hub import export_for_hub, push_folder_to_hub, save_timm_folder, set_inference
from skinacc.metrics.report import format_metrics_table, scalar_metrics, write_evaluation
from skinacc.pipeline import SKIP_LOG, build_training
from skinacc.plots import plot_training_curves
from skinacc.rundir import claim_output_dir
from skinacc.stopping import EXIT_STOPPED, StopRequest, TrainingStopped
from skinacc.tracking import (
    format_epoch_line,
    launch_info,
    log_run_end,
    main_print,
    prepare_wandb,
    run_identity,
    start_tracking,
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
    # Before anything is written: one run per folder at a time, never two runs mixed in one folder.
    lock = (
        claim_output_dir(out, bool(args.resume_from_checkpoint), args.overwrite_output_dir)
        if accelerator.is_main_process
        else None
    )
    accelerator.wait_for_everyone()
    stop = StopRequest(accelerator)  # SIGTERM or a dead launcher: checkpoint at the next step, exit 143
    set_seed(args.seed)

    pieces = build_training(accelerator, data_args, model_args, args)
    data, model, ema = pieces.data, pieces.model, pieces.ema
    normalizer, class_names = pieces.normalizer, pieces.data.class_names
    validate = not args.final_fit
    # The epoch-level plateau (or the per-step cosine) and early stopping on --select_metric; none of
    # them goes through accelerator.prepare (see skinacc.callbacks).
    scheduler, stopper = build_selection(args, pieces.optimizer, pieces.lr_scheduler)
    state = TrainState(world_size=accelerator.num_processes, process_index=accelerator.process_index)
    eval_model = ema.module if ema else model  # what is validated, kept as best and exported

    launch = launch_info(accelerator)
    identity = run_identity(model_args.model, launch, data.report.source, model_args.channels_last)
    options = config_to_dict(data_args, model_args, args, log_args)
    states = {"scheduler": scheduler, "early_stopping": stopper, "train_state": state}
    ckpt = Checkpointer(
        accelerator,
        out / "checkpoints",
        {"model": model_args.model, "class_names": class_names},
        states | ({"ema": ema} if ema else {}),
        args.keep_last_checkpoints,
        options,
    )
    if args.resume_from_checkpoint:
        path = ckpt.resume(args.resume_from_checkpoint)
        if pieces.lr_scheduler is not None:
            pieces.lr_scheduler.step_update(state.global_step)
        main_print(
            accelerator,
            f"resumed from {path}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}",
        )

    extra = {"launch": launch, "run": identity, "resolved": pieces.resolved(accelerator, args)}
    if accelerator.is_main_process:
        save_config(out / RUN_CONFIG, data_args, model_args, args, log_args, extra=extra)
        data.report.save(out / "data_report.json")
    start_tracking(accelerator, log_args, options | extra, out, "train", **identity)

    def on_step(st: TrainState, loss: torch.Tensor) -> None:
        if log_args.report_to != "none" and st.global_step % args.log_every_n_steps == 0:
            accelerator.log(
                {
                    "train/step_loss": accelerator.reduce(loss, "mean").item(),
                    "train/lr": current_lr(pieces.optimizer),
                },
                step=st.global_step,
            )
        if args.checkpoint_every_n_steps and st.global_step % args.checkpoint_every_n_steps == 0:
            ckpt.save()
        if stop.requested(st.global_step):
            ckpt.save()
            raise TrainingStopped

    def run_epoch() -> None:
        epoch = state.epoch
        pieces.train_loader.set_epoch(epoch)
        pieces.train_transform.set_epoch(epoch)
        loader = pieces.resume_loader(accelerator, state.batch_in_epoch)
        tr = train_one_epoch(
            accelerator,
            model,
            loader,
            pieces.optimizer,
            pieces.loss_fn,
            normalizer,
            state,
            max_batches=args.max_steps_per_epoch,
            max_grad_norm=args.max_grad_norm,
            on_step=on_step,
            desc=f"epoch {epoch + 1}",
            lr_scheduler=pieces.lr_scheduler,
            ema=ema,
            mix=pieces.mix,
        )
        lr = current_lr(pieces.optimizer)  # the epoch's (plateau) or its last step's (cosine) lr
        # Epochs are numbered from 1 wherever a user sees them (console, history, card, summary, W&B).
        record = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"]}
        improved = True  # --final_fit: the last epoch is the model
        if validate:
            val = evaluate(accelerator, eval_model, pieces.val_loader, normalizer, desc="validate")
            assert_ranks_agree(accelerator, val.loss, "validation loss")
            vm = val.headline_metrics(class_names)
            record |= {f"val_{k}": v for k, v in vm.items()}
            monitored = vm[args.select_metric.removeprefix("val_")]
            if pieces.lr_scheduler is None:
                scheduler.step(monitored)  # same gathered value on every rank: same decision everywhere
            improved = stopper.step(monitored, epoch + 1)
        else:
            stopper.best_epoch = epoch + 1
        keep = improved or args.select_epoch == "last"  # this epoch's weights become the model
        record |= {k: tr[k] for k in ("images_per_sec", "data_wait_pct", "step_time_ms", "peak_mem_mb")}
        record |= {
            "lr": lr,
            "epoch_seconds": tr["seconds"],
            "global_step": state.global_step,
            "is_best": keep,
        }
        state.history.append(record)
        if keep and accelerator.is_main_process:
            facts = {k: v for k, v in record.items() if k.startswith("val_")}
            meta = {"epoch": epoch + 1, **facts, "ema": ema is not None, "weights": pieces.weights.describe()}
            save_timm_folder(
                accelerator.unwrap_model(eval_model, keep_torch_compile=False),
                out / "best",
                class_names,
                pieces.inference_cfg,  # what the model is validated and served at
                {"skinacc.json": json.dumps(meta, indent=2)},
                inference={"tta": args.tta, "temperature": 1.0},
            )
        state.epoch += 1
        state.start_epoch()
        ckpt.save()
        main_print(accelerator, format_epoch_line(record, args.epochs))
        if accelerator.is_main_process:
            write_history(out, state.history)
            if data.report.add_skipped(out / SKIP_LOG):  # images that failed to decode this epoch
                data.report.save(out / "data_report.json")
        accelerator.log({f"epoch/{k}": float(v) for k, v in record.items()}, step=state.global_step)

    try:
        while state.epoch < args.epochs and not stopper.should_stop:
            run_epoch()
    except TrainingStopped:
        main_print(
            accelerator,
            f"stopped by {stop.signal or 'a stop request'} at step {state.global_step}: checkpoint {ckpt.last} saved; "
            "continue with --resume_from_checkpoint latest",
        )
        accelerator.end_training()
        raise SystemExit(EXIT_STOPPED) from None
    if stopper.should_stop:
        main_print(
            accelerator,
            f"early stopping: no {args.select_metric} improvement for {stopper.bad_epochs} epochs (best {stopper.best:.4f} at epoch {stopper.best_epoch})",
        )

    metrics: dict = {}
    model_epoch = state.epoch if args.select_epoch == "last" else stopper.best_epoch  # what best/ holds
    summary = {
        "best_epoch": model_epoch,
        "select_epoch": args.select_epoch,
        "select_metric": args.select_metric,
        f"best_{args.select_metric}": stopper.best if validate else None,
        "epochs_run": state.epoch,
        "stopped_early": stopper.should_stop,
        "final_fit": args.final_fit,
        "launch": launch,
    }
    accelerator.wait_for_everyone()
    best = out / "best"
    testing = args.eval_test and pieces.split_sizes["test"] > 0
    if (best / "model.safetensors").is_file() and (args.calibrate or testing):
        best_sd = load_file(str(best / "model.safetensors"))
        accelerator.unwrap_model(model, keep_torch_compile=False).load_state_dict(best_sd)
        cal, test = calibrate_and_test(
            accelerator,
            model,
            normalizer,
            val_loader=pieces.val_loader if args.calibrate else None,
            test_loader=pieces.test_loader if testing else None,
            tta=args.tta,
        )
        if cal:
            summary |= {f"calibration_val_{k}": v for k, v in cal.items()}
            if accelerator.is_main_process:
                set_inference(best, temperature=cal["temperature"], calibrated_on="validation")
            main_print(
                accelerator,
                f"calibration on validation ({cal['images']} images, tta {args.tta}): temperature "
                f"{cal['temperature']:.3f}, ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, "
                f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}",
            )
        if test is not None and accelerator.is_main_process:
            extra = {
                "model": model_args.model,
                "split": "test",
                "checkpoint": "best",
                "best_epoch": model_epoch,
            }
            extra |= {
                "tta": args.tta,
                "temperature": test.temperature,
                "ece_uncalibrated": test.uncalibrated_ece(),
            }
            paths = pieces.test_paths(test.sample_ids)
            metrics = write_evaluation(out / "eval_test", test.labels, test.probs, class_names, paths, extra)
            summary |= {"test_loss": test.loss, "test_images": len(test.labels)}
            summary |= {f"test_{k}": v for k, v in scalar_metrics(metrics).items() if k != "num_samples"}
            title = f"test split, model of epoch {model_epoch} (--select_epoch {args.select_epoch}, tta {args.tta})"
            main_print(accelerator, format_metrics_table(metrics, title))
            accelerator.log(
                {f"test/{k}": v for k, v in scalar_metrics(metrics).items()}, step=state.global_step
            )
    if accelerator.is_main_process:
        if data.report.add_skipped(out / SKIP_LOG):  # read for the first time by the final test
            data.report.save(out / "data_report.json")
        write_json(out / "summary.json", summary)
        if state.history:
            plot_training_curves(state.history, out / "training_curves.png")
        artifact = f"{identity['name']}-best" if log_args.log_model else None
        log_run_end(accelerator, out, metrics, {k: v for k, v in summary.items() if k != "launch"}, artifact)
        if log_args.push_to_hub:
            folder = export_for_hub(out, out / "hub", log_args.hub_model_id, log_args.hub_license)
            main_print(
                accelerator,
                f"pushed {folder} to the Hub: {push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)}",
            )
    accelerator.end_training()
    stop.restore()
    if lock is not None:
        lock.release()
    return summary


if __name__ == "__main__":
    run(main)
