"""A training run as a library object: its folder and lock, stop signals, resume, epochs, the final test,
export and publishing.

    from skinacc.config import DataArguments, ModelArguments, TrainArguments, LoggingArguments
    from skinacc.run import TrainingRun

    with TrainingRun(DataArguments(), ModelArguments(model="tf_efficientnet_lite0"),
                     TrainArguments(epochs=2, output_dir="outputs/x"), LoggingArguments(report_to="none")) as run:
        summary = run.run()          # or run.fit() (the epochs), then run.finish() (test, export, publish)

Under ``accelerate launch`` every process builds the same run; the accelerator comes from the launch
(or pass one). ``skinacc train`` / ``recipes/train.py`` parse flags and call exactly this. A stop (SIGTERM,
Ctrl+C, a dead launcher; :mod:`skinacc.stopping`) raises :class:`skinacc.stopping.TrainingStopped` out of
the ``with`` block after saving what it must; its ``note`` says how to continue.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from skinacc.artifact import set_inference
from skinacc.checkpoint import Checkpointer
from skinacc.clinical import DecisionRules
from skinacc.config import (
    RUN_CONFIG,
    ClinicalArguments,
    DataArguments,
    LoggingArguments,
    ModelArguments,
    TrainArguments,
    config_to_dict,
    save_config,
)
from skinacc.console import setup_logging
from skinacc.data.plan import SKIP_LOG
from skinacc.engine import TrainState
from skinacc.evaluation import (
    EvalOutput,
    Predictions,
    assert_ranks_agree,
    calibrate_and_test,
    evaluate,
    report,
)
from skinacc.optim import build_selection, current_lr, selection_summary
from skinacc.plots import plot_training_curves
from skinacc.run.clinical import check_clinical, choose_rules, store_rules, wants_rules
from skinacc.run.oof import write_out_of_fold
from skinacc.run.setup import TrainingSetup, build_training
from skinacc.rundir import claim_output_dir, oof_temperature, write_history, write_json
from skinacc.stopping import StopRequest, TrainingStopped
from skinacc.tracking import (
    format_epoch_line,
    launch_info,
    log_run_end,
    main_print,
    run_identity,
    start_tracking,
)

__all__ = ["TrainingRun", "make_accelerator"]


def make_accelerator(args: TrainArguments, log_args: LoggingArguments):
    """The ``Accelerator`` of a training run (launch settings come from ``accelerate launch``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    out = Path(args.output_dir)
    return Accelerator(
        gradient_accumulation_steps=args.grad_accum_steps,
        log_with=None if log_args.report_to == "none" else log_args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # Seedable sampler: the shuffle order is a function of (seed, epoch), so a resume is exact.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        step_scheduler_with_optimizer=False,
    )


class TrainingRun:
    """One training run, used as a context manager.

    Entering takes the output folder (one run per folder, a lock for its lifetime), installs the stop
    handlers, builds every piece (:func:`skinacc.run.setup.build_training`), resumes from a checkpoint
    when asked, saves the resolved config and starts the tracker. Leaving ends the tracker after a stop,
    and gives back the signal handlers and the lock, however the block ends.

    Args:
        data_args, model_args, args, log_args: The run's validated configs.
        clinical_args: What the final test reports and which decision rules are chosen on validation
            and stored with the model (default: :class:`skinacc.config.ClinicalArguments`'s defaults).
        accelerator: An ``Accelerator`` to use (default: :func:`make_accelerator`).
        watch_launcher: Ask for SIGTERM when the parent process dies, so that a killed launcher stops
            its ranks. Default: when started by ``accelerate launch`` (it sets ``ACCELERATE_DYNAMO_BACKEND``
            for every process it starts); a run called in-process leaves its caller alone.
        end_process_group: End the launch's process group when the run is done (accelerate's
            ``end_training``). A caller that runs several runs in one launch (cross-validation,
            :mod:`skinacc.run.cv`) passes False and ends it after the last; the trackers end either way.
    """

    def __init__(
        self,
        data_args: DataArguments,
        model_args: ModelArguments,
        args: TrainArguments,
        log_args: LoggingArguments,
        *,
        clinical_args: ClinicalArguments | None = None,
        accelerator=None,
        watch_launcher: bool | None = None,
        end_process_group: bool = True,
    ):
        self.data_args, self.model_args, self.args, self.log_args = data_args, model_args, args, log_args
        self.clinical_args = clinical_args or ClinicalArguments()
        self.out = Path(args.output_dir)
        self.accelerator = accelerator or make_accelerator(args, log_args)
        if watch_launcher is None:
            watch_launcher = "ACCELERATE_DYNAMO_BACKEND" in os.environ
        self.watch_launcher = watch_launcher
        self.end_process_group = end_process_group
        self.stop: StopRequest | None = None
        self._lock = None
        self.setup: TrainingSetup | None = None
        self.state = TrainState(
            world_size=self.accelerator.num_processes, process_index=self.accelerator.process_index
        )

    # ------------------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> TrainingRun:
        acc = self.accelerator
        # Logs and warnings once per job (main process); progress bars off with --disable_tqdm/TQDM_DISABLE.
        setup_logging(acc.is_main_process, self.log_args.disable_tqdm)
        # Before anything is written: one run per folder at a time, never two runs mixed in one folder.
        if acc.is_main_process:
            self._lock = claim_output_dir(
                self.out, bool(self.args.resume_from_checkpoint), self.args.overwrite_output_dir
            )
        acc.wait_for_everyone()
        # SIGTERM, Ctrl+C or a dead launcher: stop at the next safe point (saving what is needed), exit 143.
        self.stop = StopRequest(acc, watch_parent=self.watch_launcher)
        try:
            self._start()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if isinstance(exc, TrainingStopped):
                signal = self.stop.signal if self.stop else None
                main_print(
                    self.accelerator,
                    f"stopped by {signal or 'a stop request'} during {exc.phase}: {exc.note}",
                )
                self.accelerator.end_training()
        finally:
            if self.setup is not None:
                self.setup.plan.close()  # the loaders' workers end with the run, not at the next GC
            if self.stop is not None:
                self.stop.restore()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _start(self) -> None:
        from accelerate.utils import set_seed

        acc, args, model_args = self.accelerator, self.args, self.model_args
        set_seed(args.seed)
        self.setup = s = build_training(acc, self.data_args, model_args, args)
        data = s.plan.data
        check_clinical(self.clinical_args, data.class_names, s.plan, self.data_args.metadata_file)
        # The epoch-level plateau (or the per-step cosine) and early stopping on --select_metric; none of
        # them goes through accelerator.prepare (see skinacc.optim).
        self.scheduler, self.stopper = build_selection(args, s.optimizer, s.lr_scheduler)
        self.launch = launch_info(acc)
        self.identity = run_identity(
            model_args.model, self.launch, data.report.source, model_args.channels_last
        )
        self.options = config_to_dict(self.data_args, model_args, args, self.log_args, self.clinical_args)
        states = {"scheduler": self.scheduler, "early_stopping": self.stopper, "train_state": self.state}
        self.ckpt = Checkpointer(
            acc,
            self.out / "checkpoints",
            {"model": model_args.model, "class_names": data.class_names},
            states | ({"ema": s.ema} if s.ema else {}),
            args.keep_last_checkpoints,
            self.options,
        )
        if args.resume_from_checkpoint:
            path = self.ckpt.resume(args.resume_from_checkpoint)
            if s.lr_scheduler is not None:
                s.lr_scheduler.step_update(self.state.global_step)
            st = self.state
            main_print(
                acc,
                f"resumed from {path}: epoch {st.epoch + 1}, batch {st.batch_in_epoch}, step {st.global_step}",
            )
        else:
            self.ckpt.warn_if_disk_is_short(s.model, s.optimizer, s.ema)
        if self.stop.requested(0, force=True):  # a stop during data loading and set-up
            raise self.halt("set-up", save=False)
        extra = {"launch": self.launch, "run": self.identity, "resolved": s.resolved()}
        if acc.is_main_process:
            save_config(
                self.out / RUN_CONFIG,
                self.data_args,
                model_args,
                args,
                self.log_args,
                self.clinical_args,
                extra=extra,
            )
            data.report.save(self.out / "data_report.json")
        start_tracking(acc, self.log_args, self.options | extra, self.out, "train", **self.identity)

    def end(self) -> None:
        """End the run's trackers and, unless the caller keeps it for more runs, the process group."""
        if self.end_process_group:
            self.accelerator.end_training()
        else:
            for tracker in self.accelerator.trackers:
                tracker.finish()

    def halt(self, phase: str, save: bool) -> TrainingStopped:
        """The stop to raise during ``phase``, after saving a checkpoint when the phase needs one."""
        if save:
            self.ckpt.save()
        if self.ckpt.last is None:
            note = "nothing to save yet; run the same command again"
        else:
            where = (
                f"checkpoint {self.ckpt.last} saved"
                if save
                else f"the last checkpoint, {self.ckpt.last}, holds the training"
            )
            note = f"{where}; continue with --resume_from_checkpoint latest"
        return TrainingStopped(phase, note)

    # ------------------------------------------------------------------------------------------------
    # The epochs

    @property
    def validates(self) -> bool:
        """Whether epochs are validated (not under ``--final_fit``)."""
        return not self.args.final_fit

    def run(self) -> dict[str, Any]:
        """:meth:`fit`, then :meth:`finish`; the run's summary (also ``summary.json``)."""
        self.fit()
        return self.finish()

    def fit(self) -> list[dict[str, Any]]:
        """Train the remaining epochs (until ``--epochs`` or early stopping); the history."""
        while self.state.epoch < self.args.epochs and not self.stopper.should_stop:
            self.epoch()
        if self.stopper.should_stop:
            st = self.stopper
            main_print(
                self.accelerator,
                f"early stopping: no {self.args.select_metric} improvement for {st.bad_epochs} epochs (best {st.best:.4f} at epoch {st.best_epoch})",
            )
        return self.state.history

    def _on_step(self, st: TrainState, loss: torch.Tensor) -> None:
        # First: after a stop signal the tracker's own process may be gone, and the save must come fast.
        if self.stop.requested(st.global_step):
            raise self.halt("training", save=True)
        acc, args = self.accelerator, self.args
        if self.log_args.report_to != "none" and st.global_step % args.log_every_n_steps == 0:
            acc.log(
                {
                    "train/step_loss": acc.reduce(loss, "mean").item(),
                    "train/lr": current_lr(self.setup.optimizer),
                },
                step=st.global_step,
            )
        if args.checkpoint_every_n_steps and st.global_step % args.checkpoint_every_n_steps == 0:
            self.ckpt.save()

    def epoch(self) -> dict[str, Any]:
        """Train, validate and checkpoint the current epoch (or its rest, after a resume); its record."""
        acc, args, s, state = self.accelerator, self.args, self.setup, self.state
        epoch = state.epoch
        tr = s.train_epoch(state, on_step=self._on_step)
        lr = current_lr(s.optimizer)  # the epoch's (plateau) or its last step's (cosine) lr
        # Epochs are numbered from 1 wherever a user sees them (console, history, card, summary, W&B).
        record = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"]}
        improved = False
        if self.validates:
            try:
                val = evaluate(acc, s.predictor(), s.plan.val_loader, desc="validate",
                               check_stop=self.stop.checker("validation"))  # fmt: skip
            except TrainingStopped:
                # The epoch's training is done: save it; a resume validates it and goes on from there.
                raise self.halt("validation", save=True) from None
            assert_ranks_agree(acc, val.loss, "validation loss")
            vm = val.headline_metrics(s.plan.data.class_names)
            record |= {f"val_{k}": v for k, v in vm.items()}
            monitored = vm[args.select_metric.removeprefix("val_")]
            if s.lr_scheduler is None:
                self.scheduler.step(monitored)  # same gathered value on every rank: same decision everywhere
            improved = self.stopper.step(monitored, epoch + 1)
        # This epoch's weights become the model: the best so far, or every epoch under --select_epoch
        # last and --final_fit (the last epoch is the model).
        keep = improved or args.select_epoch == "last" or not self.validates
        record |= {k: tr[k] for k in ("images_per_sec", "data_wait_pct", "step_time_ms", "peak_mem_mb")}
        record |= {
            "lr": lr,
            "epoch_seconds": tr["seconds"],
            "global_step": state.global_step,
            "is_best": improved,  # the best --select_metric so far
            "is_model": keep,  # these weights are in best/ (the run's model) now
        }
        state.history.append(record)
        if keep and acc.is_main_process:
            self._export_best(record)
        state.epoch += 1
        state.start_epoch()
        self.ckpt.save()
        main_print(acc, format_epoch_line(record, args.epochs))
        if acc.is_main_process:
            write_history(self.out, state.history)
            report = s.plan.data.report
            if report.add_skipped(self.out / SKIP_LOG):  # images that failed to decode this epoch
                report.save(self.out / "data_report.json")
        acc.log({f"epoch/{k}": float(v) for k, v in record.items()}, step=state.global_step)
        if self.stop.requested(state.global_step, force=True):  # a stop during the epoch's end: saved above
            raise self.halt("the end of an epoch", save=False)
        return record

    def _export_best(self, record: dict[str, Any]) -> None:
        from skinacc.artifact import save_timm_folder

        s = self.setup
        facts = {k: v for k, v in record.items() if k.startswith("val_")}
        meta = {"epoch": record["epoch"], **facts, "ema": s.ema is not None, "weights": s.weights.describe()}
        save_timm_folder(
            self.accelerator.unwrap_model(s.eval_model, keep_torch_compile=False),
            self.out / "best",
            s.plan.data.class_names,
            s.eval_cfg,  # what the model is validated and served at
            {"skinacc.json": json.dumps(meta, indent=2)},
            inference={"tta": self.args.tta, "temperature": 1.0},
        )

    # ------------------------------------------------------------------------------------------------
    # The end

    def finish(self) -> dict[str, Any]:
        """Calibrate and test the run's model, write the summary, plots and tracker end, publish.

        A stop during any of it leaves the last epoch's checkpoint to resume from: a resumed run that has
        no epochs left does exactly this again.

        Returns:
            The summary (also written to ``summary.json``): the model's epoch and the best epoch with
            their values, calibration figures, test metrics, the launch.
        """
        args, stopper, state = self.args, self.stopper, self.state
        best_epoch = stopper.best_epoch if self.validates and stopper.best_epoch > 0 else None
        summary = selection_summary(state.history, args.select_metric, args.select_epoch, best_epoch)
        summary |= {"select_epoch": args.select_epoch, "select_metric": args.select_metric,
                    "epochs_run": state.epoch, "stopped_early": stopper.should_stop,
                    "final_fit": args.final_fit, "launch": self.launch}  # fmt: skip
        self.accelerator.wait_for_everyone()
        if args.calibrate_from:
            t = oof_temperature(args.calibrate_from)[0]
            summary["calibration_oof_temperature"] = t
            self._store_temperature(t, f"out-of-fold predictions of {args.calibrate_from}")
            main_print(
                self.accelerator,
                f"temperature {t:.4f} from the out-of-fold predictions of {args.calibrate_from}",
            )
        self._test(summary)
        self._close(summary)
        return summary

    def _store_temperature(self, t: float, calibrated_on: str) -> None:
        if self.accelerator.is_main_process:
            set_inference(self.out / "best", temperature=t, calibrated_on=calibrated_on)

    def _test(self, summary: dict[str, Any]) -> None:
        """Predict validation again (to fit the temperature, choose decision rules, keep a fold's
        held-out predictions) and test the model of ``summary["model_epoch"]``."""
        acc, args, s, clinical = self.accelerator, self.args, self.setup, self.clinical_args
        fold, best = self.data_args.cv_fold, self.out / "best"
        testing = args.eval_test and s.plan.sizes["test"] > 0
        need_val = args.calibrate or wants_rules(clinical) or fold is not None
        need_val = need_val and s.plan.sizes["validation"] > 0
        if not (best / "model.safetensors").is_file() or not (need_val or testing):
            return
        acc.unwrap_model(s.model, keep_torch_compile=False).load_state_dict(
            load_file(str(best / "model.safetensors"))
        )
        try:
            cal, val, test = calibrate_and_test(
                acc, s.predictor(s.model, tta=args.tta), val_loader=s.plan.val_loader if need_val else None,
                test_loader=s.plan.test_loader if testing else None, stop=self.stop, calibrate=args.calibrate,
            )  # fmt: skip
        except TrainingStopped as e:
            raise self.halt(e.phase, save=False) from None
        if cal:
            summary |= {f"calibration_val_{k}": v for k, v in cal.items()}
            self._store_temperature(cal["temperature"], "validation")
            main_print(
                acc,
                f"calibration on validation ({cal['images']} images, tta {args.tta}): temperature "
                f"{cal['temperature']:.3f}, ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, "
                f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}",
            )
        if test is not None and args.calibrate_from:
            test.temperature = summary["calibration_oof_temperature"]  # the model's stored temperature
        if not acc.is_main_process:
            return
        model_epoch = summary["model_epoch"]
        if val is not None and fold is not None:
            pred = self._predictions("validation", val, clinical.subgroup_columns)
            write_out_of_fold(self.out / "eval_validation", pred, val, fold, model_epoch)
        rules = DecisionRules()
        if val is not None and wants_rules(clinical):
            rules = choose_rules(clinical, s.plan.data.class_names, val.labels, val.probs, val.disagreement)
            store_rules(best, rules)
            print("decision rules stored with the model:\n  " + "\n  ".join(rules.describe()))
        if test is None:
            return
        extra = {"model": self.model_args.model, "split": "test", "checkpoint": "best",
                 "model_epoch": model_epoch, "tta": args.tta, "temperature": test.temperature,
                 "ece_uncalibrated": test.uncalibrated_ece()}  # fmt: skip
        title = (
            f"test split, model of epoch {model_epoch} (--select_epoch {args.select_epoch}, tta {args.tta})"
        )
        pred = self._predictions("test", test, clinical.subgroup_columns)
        result = report(pred, self.out / "eval_test", extra=extra, title=title, clinical=clinical,
                        rules=rules, accelerator=acc, tag="test", step=self.state.global_step)  # fmt: skip
        summary |= {"test_loss": test.loss, "test_images": len(test.labels)}
        summary |= {f"test_{k}": v for k, v in result.scalars().items() if k != "num_samples"}

    def _predictions(self, split: str, output: EvalOutput, columns: Sequence[str] = ()) -> Predictions:
        """The model's predictions of one of the run's splits as a record, with groups and ``columns``."""
        plan = self.setup.plan
        return Predictions.from_table(
            plan.data.dataset[split], class_names=plan.data.class_names, labels=output.labels,
            probs=output.probs, sample_ids=output.sample_ids, paths=plan.paths(split, output.sample_ids),
            disagreement=output.disagreement, group_column=self.data_args.group_column, columns=columns,
            streaming=plan.streaming, metadata_file=self.data_args.metadata_file, root=plan.data.report.root,
        )  # fmt: skip

    def _close(self, summary: dict[str, Any]) -> None:
        """Write the summary, the data report and the training curves, end the tracker, publish."""
        acc, out, log_args = self.accelerator, self.out, self.log_args
        if acc.is_main_process:
            data_report = self.setup.plan.data.report
            if data_report.add_skipped(out / SKIP_LOG):  # read for the first time by the final test
                data_report.save(out / "data_report.json")
            write_json(out / "summary.json", summary)
            if self.state.history:
                plot_training_curves(self.state.history, out / "training_curves.png")
            if self.stop.signal:  # uploads can outlast the launcher's grace: leave them to the resumed run
                raise self.halt("publishing", save=False)
            artifact = f"{self.identity['name']}-best" if log_args.log_model else None
            log_run_end(acc, out, {k: v for k, v in summary.items() if k != "launch"}, artifact)
            if log_args.push_to_hub:
                from skinacc.hub import export_for_hub, push_folder_to_hub

                folder = export_for_hub(out, out / "hub", log_args.hub_model_id, log_args.hub_license)
                url = push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)
                print(f"pushed {folder} to the Hub: {url}")
        self.end()
