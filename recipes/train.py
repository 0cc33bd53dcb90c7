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

from skinacc.callbacks import build_selection, current_lr, selection_summary
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
from skinacc.console import setup_logging
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
    accelerator = Accelerator(
        gradient_accumulation_steps=args.grad_accum_steps,
        log_with=None if log_args.report_to == "none" else log_args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # Seedable sampler: the shuffle order is a function of (seed, epoch), so a resume is exact.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        step_scheduler_with_optimizer=False,
    )
    # Logs and warnings once per job (main process); progress bars off with --disable_tqdm/TQDM_DISABLE.
    setup_logging(accelerator.is_main_process, log_args.disable_tqdm)
    # Before anything is written: one run per folder at a time, never two runs mixed in one folder.
    lock = (
        claim_output_dir(out, bool(args.resume_from_checkpoint), args.overwrite_output_dir)
        if accelerator.is_main_process
        else None
    )
    accelerator.wait_for_everyone()
    # SIGTERM, Ctrl+C or a dead launcher: stop at the next safe point (saving what is needed), exit 143.
    stop = StopRequest(accelerator)
    try:
        return _train(accelerator, stop, out, data_args, model_args, args, log_args)
    except TrainingStopped as e:
        main_print(accelerator, f"stopped by {stop.signal or 'a stop request'} during {e.phase}: {e.note}")
        accelerator.end_training()
        raise SystemExit(EXIT_STOPPED) from None
    finally:
        stop.restore()
        if lock is not None:
            lock.release()


def _train(accelerator, stop, out, data_args, model_args, args, log_args) -> dict:
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

    def halt(phase: str, save: bool) -> TrainingStopped:
        """The stop to raise during ``phase``, after saving a checkpoint when the phase needs one."""
        if save:
            ckpt.save()
        if ckpt.last is None:
            note = "nothing to save yet; run the same command again"
        else:
            where = (
                f"checkpoint {ckpt.last} saved"
                if save
                else f"the last checkpoint, {ckpt.last}, holds the training"
            )
            note = f"{where}; continue with --resume_from_checkpoint latest"
        return TrainingStopped(phase, note)

    if args.resume_from_checkpoint:
        path = ckpt.resume(args.resume_from_checkpoint)
        if pieces.lr_scheduler is not None:
            pieces.lr_scheduler.step_update(state.global_step)
        main_print(
            accelerator,
            f"resumed from {path}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}",
        )
    else:
        ckpt.warn_if_disk_is_short(pieces.model, pieces.optimizer, ema)
    if stop.requested(0, force=True):  # a stop during data loading and set-up
        raise halt("set-up", save=False)

    extra = {"launch": launch, "run": identity, "resolved": pieces.resolved(accelerator, args)}
    if accelerator.is_main_process:
        save_config(out / RUN_CONFIG, data_args, model_args, args, log_args, extra=extra)
        data.report.save(out / "data_report.json")
    start_tracking(accelerator, log_args, options | extra, out, "train", **identity)

    def on_step(st: TrainState, loss: torch.Tensor) -> None:
        # First: after a stop signal the tracker's own process may be gone, and the save must come fast.
        if stop.requested(st.global_step):
            raise halt("training", save=True)
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
        improved = False
        if validate:
            try:
                val = evaluate(
                    accelerator, eval_model, pieces.val_loader, normalizer, desc="validate",
                    check_stop=stop.checker("validation"),
                )  # fmt: skip
            except TrainingStopped:
                # The epoch's training is done: save it; a resume validates it and goes on from there.
                raise halt("validation", save=True) from None
            assert_ranks_agree(accelerator, val.loss, "validation loss")
            vm = val.headline_metrics(class_names)
            record |= {f"val_{k}": v for k, v in vm.items()}
            monitored = vm[args.select_metric.removeprefix("val_")]
            if pieces.lr_scheduler is None:
                scheduler.step(monitored)  # same gathered value on every rank: same decision everywhere
            improved = stopper.step(monitored, epoch + 1)
        # This epoch's weights become the model: the best so far, or every epoch under --select_epoch
        # last and --final_fit (the last epoch is the model).
        keep = improved or args.select_epoch == "last" or not validate
        record |= {k: tr[k] for k in ("images_per_sec", "data_wait_pct", "step_time_ms", "peak_mem_mb")}
        record |= {
            "lr": lr,
            "epoch_seconds": tr["seconds"],
            "global_step": state.global_step,
            "is_best": improved,  # the best --select_metric so far
            "is_model": keep,  # these weights are in best/ (the run's model) now
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
        if stop.requested(state.global_step, force=True):  # a stop during the epoch's end: saved above
            raise halt("the end of an epoch", save=False)

    while state.epoch < args.epochs and not stopper.should_stop:
        run_epoch()
    if stopper.should_stop:
        main_print(
            accelerator,
            f"early stopping: no {args.select_metric} improvement for {stopper.bad_epochs} epochs (best {stopper.best:.4f} at epoch {stopper.best_epoch})",
        )

    metrics: dict = {}
    best_epoch = stopper.best_epoch if validate and stopper.best_epoch > 0 else None
    summary = selection_summary(state.history, args.select_metric, args.select_epoch, best_epoch)
    model_epoch = summary["model_epoch"]
    summary |= {
        "select_epoch": args.select_epoch,
        "select_metric": args.select_metric,
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
        try:
            cal, test = calibrate_and_test(
                accelerator,
                model,
                normalizer,
                val_loader=pieces.val_loader if args.calibrate else None,
                test_loader=pieces.test_loader if testing else None,
                tta=args.tta,
                stop=stop,
            )
        except TrainingStopped as e:
            raise halt(e.phase, save=False) from None
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
                "model_epoch": model_epoch,
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
        if stop.signal:  # uploads can outlast the launcher's grace: leave them to the resumed run
            raise halt("publishing", save=False)
        artifact = f"{identity['name']}-best" if log_args.log_model else None
        log_run_end(accelerator, out, metrics, {k: v for k, v in summary.items() if k != "launch"}, artifact)
        if log_args.push_to_hub:
            folder = export_for_hub(out, out / "hub", log_args.hub_model_id, log_args.hub_license)
            main_print(
                accelerator,
                f"pushed {folder} to the Hub: {push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)}",
            )
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    run(main)
