"""The end of a training run: which epoch is the model, its calibration on validation and its test, the
summary, plots and the tracker's end, and publishing.

A stop during any of it leaves the last epoch's checkpoint to resume from: a resumed run that has no
epochs left does exactly this part again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file

from skinacc.artifact import set_inference
from skinacc.clinical import DecisionRules
from skinacc.data.plan import SKIP_LOG
from skinacc.evaluation import calibrate_and_test
from skinacc.metrics.report import format_metrics_table, scalar_metrics, write_evaluation
from skinacc.optim import selection_summary
from skinacc.plots import plot_evaluation, plot_training_curves
from skinacc.run.clinical import choose_rules, clinical_scalars, report_clinical, store_rules, wants_rules
from skinacc.run.oof import write_out_of_fold
from skinacc.rundir import oof_temperature, write_json
from skinacc.stopping import TrainingStopped
from skinacc.tracking import log_run_end, main_print

if TYPE_CHECKING:
    from skinacc.run.training import TrainingRun

__all__ = ["finish_run"]


def finish_run(run: TrainingRun) -> dict[str, Any]:
    """Test, summarise and publish a run whose epochs are done.

    Returns:
        The summary (also written to ``summary.json``): the model's epoch and the best epoch with their
        values, calibration figures, test metrics, the launch.
    """
    acc, args, log_args, s, out = run.accelerator, run.args, run.log_args, run.setup, run.out
    stopper, state = run.stopper, run.state
    class_names = s.plan.data.class_names
    metrics: dict = {}
    best_epoch = stopper.best_epoch if run.validates and stopper.best_epoch > 0 else None
    summary = selection_summary(state.history, args.select_metric, args.select_epoch, best_epoch)
    model_epoch = summary["model_epoch"]
    summary |= {
        "select_epoch": args.select_epoch,
        "select_metric": args.select_metric,
        "epochs_run": state.epoch,
        "stopped_early": stopper.should_stop,
        "final_fit": args.final_fit,
        "launch": run.launch,
    }
    acc.wait_for_everyone()
    best = out / "best"
    testing = args.eval_test and s.plan.sizes["test"] > 0
    clinical = run.clinical_args
    # Validation is predicted again at the end to fit the temperature and to choose decision thresholds.
    # A cross-validation fold also keeps its model's predictions of its held-out fold (out-of-fold).
    fold = run.data_args.cv_fold
    need_val = (args.calibrate or wants_rules(clinical) or fold is not None) and s.plan.sizes[
        "validation"
    ] > 0
    oof_t = oof_temperature(args.calibrate_from)[0] if args.calibrate_from else None
    if oof_t is not None:
        summary["calibration_oof_temperature"] = oof_t
        if acc.is_main_process:
            set_inference(
                best, temperature=oof_t, calibrated_on=f"out-of-fold predictions of {args.calibrate_from}"
            )
        main_print(acc, f"temperature {oof_t:.4f} from the out-of-fold predictions of {args.calibrate_from}")
    if (best / "model.safetensors").is_file() and (need_val or testing):
        acc.unwrap_model(s.model, keep_torch_compile=False).load_state_dict(
            load_file(str(best / "model.safetensors"))
        )
        try:
            cal, val, test = calibrate_and_test(
                acc,
                s.predictor(s.model, tta=args.tta),
                val_loader=s.plan.val_loader if need_val else None,
                test_loader=s.plan.test_loader if testing else None,
                stop=run.stop,
                calibrate=args.calibrate,
            )
        except TrainingStopped as e:
            raise run.halt(e.phase, save=False) from None
        if cal:
            summary |= {f"calibration_val_{k}": v for k, v in cal.items()}
            if acc.is_main_process:
                set_inference(best, temperature=cal["temperature"], calibrated_on="validation")
            main_print(
                acc,
                f"calibration on validation ({cal['images']} images, tta {args.tta}): temperature "
                f"{cal['temperature']:.3f}, ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, "
                f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}",
            )
        if test is not None and oof_t is not None:
            test.temperature = oof_t  # the model's stored temperature (below) is the one it is tested at
        if val is not None and fold is not None and acc.is_main_process:
            write_out_of_fold(out / "eval_validation", val, s.plan, class_names, fold, model_epoch)
        rules = DecisionRules()
        if val is not None and wants_rules(clinical) and acc.is_main_process:
            rules = choose_rules(clinical, class_names, val.labels, val.probs, val.disagreement)
            store_rules(best, rules)
            main_print(acc, "decision rules stored with the model:\n  " + "\n  ".join(rules.describe()))
        if test is not None and acc.is_main_process:
            extra = {
                "model": run.model_args.model,
                "split": "test",
                "checkpoint": "best",
                "model_epoch": model_epoch,
                "tta": args.tta,
                "temperature": test.temperature,
                "ece_uncalibrated": test.uncalibrated_ece(),
            }
            paths = s.plan.paths("test", test.sample_ids)
            metrics = write_evaluation(out / "eval_test", test.labels, test.probs, class_names, paths, extra)
            plot_evaluation(out / "eval_test", test.labels, test.probs, class_names, metrics)
            summary |= {"test_loss": test.loss, "test_images": len(test.labels)}
            summary |= {f"test_{k}": v for k, v in scalar_metrics(metrics).items() if k != "num_samples"}
            title = f"test split, model of epoch {model_epoch} (--select_epoch {args.select_epoch}, tta {args.tta})"
            main_print(acc, format_metrics_table(metrics, title))
            acc.log({f"test/{k}": v for k, v in scalar_metrics(metrics).items()}, step=state.global_step)
            report = report_clinical(
                out / "eval_test",
                clinical,
                labels=test.labels,
                probs=test.probs,
                class_names=class_names,
                rules=rules,
                table=s.plan.data.dataset["test"],
                sample_ids=test.sample_ids,
                streaming=s.plan.streaming,
                group_column=run.data_args.group_column,
                metadata_file=run.data_args.metadata_file,
                root=s.plan.data.report.root,
                disagreement=test.disagreement,
                accelerator=acc,
                tag="test",
                step=state.global_step,
            )
            summary |= {f"test_{k}": v for k, v in clinical_scalars(report).items()}
    if acc.is_main_process:
        report = s.plan.data.report
        if report.add_skipped(out / SKIP_LOG):  # read for the first time by the final test
            report.save(out / "data_report.json")
        write_json(out / "summary.json", summary)
        if state.history:
            plot_training_curves(state.history, out / "training_curves.png")
        if run.stop.signal:  # uploads can outlast the launcher's grace: leave them to the resumed run
            raise run.halt("publishing", save=False)
        artifact = f"{run.identity['name']}-best" if log_args.log_model else None
        log_run_end(acc, out, metrics, {k: v for k, v in summary.items() if k != "launch"}, artifact)
        if log_args.push_to_hub:
            from skinacc.hub import export_for_hub, push_folder_to_hub

            folder = export_for_hub(out, out / "hub", log_args.hub_model_id, log_args.hub_license)
            url = push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)
            main_print(acc, f"pushed {folder} to the Hub: {url}")
    run.end()
    return summary
