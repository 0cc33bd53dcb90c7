"""A trained model evaluated on a split of its own data or on any labelled folder: metrics, per-class
table, predictions, plots, the tracker, and Grad-CAM grids of its most confident errors and successes.

``skinacc evaluate`` / ``recipes/evaluate.py`` parse flags and call :func:`evaluate_model`. Results go to
disk batch by batch (:class:`skinacc.evaluation.PredictionLog`), so any number of images keeps flat
memory and a stopped evaluation continues with ``--resume``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from accelerate.utils import broadcast_object_list

from skinacc.artifact import LoadedModel, load_model, resolve_model_spec
from skinacc.clinical import DecisionRules, uncertainty, view_disagreement, write_clinical
from skinacc.clinical.shift import ood_separation
from skinacc.config import DataArguments, LoggingArguments, read_run_config
from skinacc.config.clinical import ClinicalArguments
from skinacc.config.inference import EvalArguments
from skinacc.console import setup_logging
from skinacc.data import default_num_workers, load_data
from skinacc.data.plan import build_eval_plan
from skinacc.ensemble import ENSEMBLE_DIR, ENSEMBLE_FILE, is_ensemble
from skinacc.evaluation import PredictionLog, evaluate, stress_test
from skinacc.inference import collect_images, iter_probs
from skinacc.metrics.report import format_metrics_table, scalar_metrics, write_evaluation
from skinacc.plots.evaluation import plot_evaluation
from skinacc.predictor import Predictor, set_memory_format
from skinacc.run.clinical import choose_rules, clinical_scalars, report_clinical, store_rules, wants_rules
from skinacc.tracking import log_evaluation, log_images, start_tracking, wandb_run

__all__ = ["PARTIAL", "evaluate_model", "model_run_config", "run_data_options"]

#: Results written as they come (see skinacc.evaluation.PredictionLog); removed once the metrics are out.
PARTIAL = "predictions.partial"


def model_run_config(model: str | None) -> dict[str, Any]:
    """The resolved configuration of the training behind ``model``: a run folder's, an ensemble folder's,
    or a cross-validation folder's ensemble's (``{}`` for a bare timm folder or a Hub id)."""
    if not model:
        return {}
    return read_run_config(model) or read_run_config(Path(model) / ENSEMBLE_DIR)


def run_data_options(model: str | None) -> dict[str, Any]:
    """Data options of the training run behind ``model`` (so the same split is rebuilt).

    Not its sizes: those come with the model, and ``--image_size``/``--resize_size`` given here override them.
    """
    data = dict(model_run_config(model).get("data", {}))
    return {k: v for k, v in data.items() if k not in ("image_size", "resize_size")}


def evaluate_model(
    args: EvalArguments,
    data_args: DataArguments,
    log_args: LoggingArguments,
    clinical: ClinicalArguments | None = None,
    *,
    external: bool = False,
    accelerator=None,
) -> dict[str, Any]:
    """Evaluate ``args.model`` and write its results.

    Args:
        args: What to evaluate and where results go.
        data_args: The data: the trained run's own options (``external=False``: its split is rebuilt,
            :func:`run_data_options`), or an outside source (every image is evaluated unless
            ``args.split`` says otherwise; classes are matched to the model's by name).
        log_args: Tracking (``report_to``).
        clinical: The clinical evaluation (label groups, CIs, subgroups, abstention; decision rules are
            the model's stored ones unless ``--operating_point``/``--abstain_coverage`` choose new ones
            on the data's validation split). Default: :class:`ClinicalArguments`'s defaults.
        accelerator: An ``Accelerator`` (default: one from the launch).

    Returns:
        The scalar metrics (on every process; the main process writes the files).
    """
    clinical = clinical or ClinicalArguments()
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(log_with=None if log_args.report_to == "none" else log_args.report_to)
    split_name = args.split or ("all" if external else "test")
    # Logs and warnings once per job (main process); progress bars off with --disable_tqdm/TQDM_DISABLE.
    setup_logging(accelerator.is_main_process, log_args.disable_tqdm)
    run_dir = Path(args.model)
    source = data_args.data_dir or data_args.dataset_name
    tag = Path(source).name if external and split_name == "all" else split_name
    out = Path(args.output_dir or (run_dir / f"eval_{tag}" if run_dir.is_dir() else f"outputs/eval_{tag}"))

    loaded = _at_requested_size(load_model(args.model), data_args, accelerator)
    if data_args.streaming and args.explain:
        raise ValueError("--explain reads chosen images back by row, which a stream cannot: drop --streaming")
    with accelerator.main_process_first():
        data = load_data(data_args, known_classes=loaded.label_names)
    to_model = _model_columns(data, loaded.label_names, data_args, args.model)
    tta, temperature = args.tta or loaded.tta, args.temperature or loaded.temperature

    # Results go to disk batch by batch (flat memory); --resume skips the images already there.
    log = PredictionLog(out / PARTIAL, len(loaded.label_names))
    settings = {
        "model": str(args.model),
        "split": split_name,
        "source": str(source),
        "tta": tta,
        "temperature": temperature,
        "image_size": loaded.data_cfg.image_size,
        "resize_size": loaded.data_cfg.resize_size,
        "format": 2,
    }
    done = log.start(settings, args.resume) if accelerator.is_main_process else None
    done = set(broadcast_object_list([None if done is None else done.tolist()])[0])
    if done:
        accelerator.print(f"--resume: {len(done)} images already evaluated in {log.path}")
    workers = default_num_workers(data_args.num_workers, accelerator.num_processes)
    plan = build_eval_plan(
        accelerator,
        data,
        split_name,
        loaded.data_cfg,
        args.batch_size,
        workers,
        skip=done,
        pin_memory=data_args.pin_memory,
    )
    if args.channels_last:
        set_memory_format(loaded.model, True)  # in place, as training's --channels_last
    model = accelerator.prepare(loaded.model)
    config = {"eval": vars(args), "data": vars(data_args), "label_names": loaded.label_names}
    start_tracking(
        accelerator, log_args, config, out, "eval", f"eval-{Path(args.model).name}-{tag}", tags=["eval", tag]
    )
    predictor = Predictor(
        model,
        loaded.data_cfg,
        tta=tta,
        temperature=temperature,
        device=accelerator.device,
        channels_last=args.channels_last,
        autocast=accelerator.autocast,
    )

    def write(z: np.ndarray, y: np.ndarray, ids: np.ndarray) -> None:
        if accelerator.is_main_process:
            views = predictor.probs(z.reshape(-1, z.shape[-1])).reshape(z.shape) if z.shape[1] > 1 else None
            log.append(ids, y, predictor.probs(z), None if views is None else view_disagreement(views))

    rules = _decision_rules(
        args, clinical, loaded, data, to_model, predictor, accelerator, workers, data_args
    )
    images_per_sec = 0.0
    if plan.size:
        images_per_sec = evaluate(
            accelerator, predictor, plan.loader, desc=tag, on_batch=write, keep=False
        ).images_per_sec
    flips = stress_test(accelerator, predictor, plan.loader) if args.stress and plan.size else None
    metrics = {}
    if accelerator.is_main_process:
        rec = log.records()
        sample_ids, data_labels, probs = (
            rec["sample_id"].copy(),
            rec["label"].copy(),
            rec["probs"].astype(np.float64),
        )
        disagreement = rec["disagreement"].astype(np.float64) if tta != "none" else None
        labels = to_model[data_labels]
        extra = {
            "model": args.model,
            "split": split_name,
            "tta": tta,
            "temperature": temperature,
            "image_size": loaded.data_cfg.image_size,
            "resize_size": loaded.data_cfg.resize_size,
            "data_source": data.report.source + (f" ({data.report.root})" if data.report.root else ""),
            "classes_in_data": data.class_names,
            "images_per_sec": images_per_sec,
            "num_processes": accelerator.num_processes,
        }
        metrics = write_evaluation(out, labels, probs, loaded.label_names, plan.paths(sample_ids), extra)
        figures = plot_evaluation(out, labels, probs, loaded.label_names, metrics)
        title = f"{args.model} on {tag}, tta {tta}, temperature {temperature:.3f}"
        _report(accelerator, metrics, figures, out, tag, title, loaded.label_names, data.class_names)
        report = report_clinical(
            out,
            clinical,
            labels=labels,
            probs=probs,
            class_names=loaded.label_names,
            rules=rules,
            table=plan.table,
            sample_ids=sample_ids,
            streaming=plan.streaming,
            group_column=data_args.group_column,
            metadata_file=data_args.metadata_file,
            root=data.report.root,
            disagreement=disagreement,
            accelerator=accelerator,
            tag=tag,
        )
        score = rules.abstention.score if rules.abstention else clinical.abstain_score
        shift = _shift(args, predictor, workers, uncertainty(probs, score, disagreement), score, flips)
        if shift:
            report["shift"] = shift
            write_clinical(out, report)
        metrics |= {k: v for k, v in clinical_scalars(report).items()}
        log.remove()  # the results are in predictions.csv, metrics.json, clinical.json and the figures now
        if args.explain:
            _explain(
                args,
                accelerator.unwrap_model(model),
                loaded,
                temperature,
                plan,
                sample_ids,
                labels,
                probs,
                out,
                accelerator,
            )
    accelerator.end_training()
    return scalar_metrics(metrics)


def _decision_rules(
    args, clinical, loaded, data, to_model, predictor, accelerator, workers, data_args
) -> DecisionRules:
    """The model's stored rules, or new ones chosen on the data's validation split when
    ``--operating_point``/``--abstain_coverage`` are given (and stored with ``--save_rules``)."""
    if not wants_rules(clinical):
        if loaded.decision:
            accelerator.print(
                "decision rules stored with the model:\n  " + "\n  ".join(loaded.decision.describe())
            )
        return loaded.decision
    if "validation" not in data.dataset or not (
        data.sizes.get("validation") if data.streaming else len(data.dataset["validation"])
    ):
        raise ValueError(
            "--operating_point/--abstain_coverage are chosen on a validation split, and these data have "
            "none: evaluate the trained run's own data (no --data_dir), or give a source with a validation split"
        )
    vplan = build_eval_plan(
        accelerator,
        data,
        "validation",
        loaded.data_cfg,
        args.batch_size,
        workers,
        pin_memory=data_args.pin_memory,
    )
    val = evaluate(accelerator, predictor, vplan.loader, desc="validation")
    rules = DecisionRules()
    if accelerator.is_main_process:
        rules = choose_rules(clinical, loaded.label_names, to_model[val.labels], val.probs, val.disagreement)
        accelerator.print(
            f"decision rules chosen on validation ({len(val.labels)} images):\n  "
            + "\n  ".join(rules.describe())
        )
        if args.save_rules:
            folder = resolve_model_spec(args.model)
            if not folder.startswith("local-dir:"):
                raise ValueError(
                    f"--save_rules writes into a local model folder; --model={args.model!r} is not one"
                )
            folder = folder[len("local-dir:") :]
            store_rules(folder, rules)
            where = Path(folder) / (ENSEMBLE_FILE if is_ensemble(folder) else "config.json")
            accelerator.print(f"--save_rules: stored in {where}")
    return broadcast_object_list([rules])[0]


def _shift(args, predictor, workers, unc_test, score, flips) -> dict[str, Any]:
    """The shift report (main process): separation of ``--ood_dir``'s images by uncertainty, and the
    stress test's flip rates."""
    out: dict[str, Any] = {}
    if flips is not None:
        out["stress"] = {"flip_rate": flips, "note": "share of test images whose top class changes"}
        print(
            "stress (share of predictions that flip):  " + ", ".join(f"{k} {v:.3f}" for k, v in flips.items())
        )
    if args.ood_dir:
        files = collect_images([args.ood_dir])
        if not files:
            raise ValueError(f"--ood_dir={args.ood_dir!r}: no images found")
        unc = []
        for _, probs, disagreement, _bad in iter_probs(predictor, files, args.batch_size, workers):
            if len(probs):
                unc.append(uncertainty(probs, score, disagreement))
        sep = ood_separation(unc_test, np.concatenate(unc)) | {"score": score, "ood_dir": args.ood_dir}
        out["ood"] = sep
        print(
            f"out-of-distribution ({sep['ood_images']} images of {args.ood_dir} vs {sep['in_images']} evaluated, "
            f"{score}): AUROC {sep['auroc']:.3f}, FPR at 95% TPR {sep['fpr_at_95_tpr']:.3f}"
        )
    return out


def _at_requested_size(loaded: LoadedModel, data_args: DataArguments, accelerator) -> LoadedModel:
    """The model's own sizes unless ``--image_size``/``--resize_size`` are given (as timm's validate.py
    ``--img-size``, the crop ratio kept): a CNN trained on random-resized crops often scores better a
    little above its training size."""
    if not (data_args.image_size or data_args.resize_size):
        return loaded
    cfg = loaded.data_cfg.at_size(data_args.image_size or loaded.data_cfg.image_size, data_args.resize_size)
    if cfg.resize_size < cfg.image_size:
        raise ValueError(
            f"--resize_size={cfg.resize_size}: must be >= the crop size {cfg.image_size} (--image_size)"
        )
    accelerator.print(
        f"evaluating at {cfg.image_size} px (resize {cfg.resize_size}) instead of the model's own size"
    )
    return loaded._replace(data_cfg=cfg)


def _model_columns(data, label_names: list[str], data_args: DataArguments, model: str) -> np.ndarray:
    """Data label ids -> the model's output columns (class sets may differ in order and size); a class
    the model does not know is refused."""
    unknown = [c for c in data.class_names if c not in label_names]
    if unknown:
        where = f"--data_dir={data_args.data_dir!r}" if data_args.data_dir else data.report.source
        raise ValueError(
            f"{where}: class(es) {unknown} unknown to --model={model!r}, which knows {label_names}; "
            "rename or remove those class folders"
        )
    return np.array([label_names.index(c) for c in data.class_names])


def _report(
    accelerator, metrics, figures, out: Path, tag: str, title: str, label_names, classes_in_data
) -> None:
    """Print the metrics table and send them, with the figures, to the tracker (main process)."""
    missing = [c for c in label_names if c not in classes_in_data]
    print(format_metrics_table(metrics, title))
    if missing:
        print(
            f"classes of the model absent from the data (recall undefined, left out of balanced accuracy): {missing}"
        )
    print(f"wrote {out}/metrics.json, per_class.csv, predictions.csv and plots")
    accelerator.log({f"{tag}/{k}": v for k, v in scalar_metrics(metrics).items()})
    wb = wandb_run(accelerator)
    log_evaluation(wb, metrics, tag)
    log_images(wb, {f"plots/{p.stem}": p for p in figures})


def _explain(
    args, model, loaded, temperature, plan, sample_ids, labels, probs, out: Path, accelerator
) -> None:
    """Grad-CAM grids of the most confident errors and successes (``--explain``), read back by row."""
    from skinacc.explain import Explainer, write_case_grids

    # Rows of the evaluated table in the order of the gathered predictions.
    row_of = {int(s): i for i, s in enumerate(plan.table["sample_id"])}
    images = plan.table.select_columns(["image"])
    explainer = Explainer(model, loaded.data_cfg, args.cam_layer, args.cam_method, temperature)
    grids = write_case_grids(
        explainer,
        lambda r: images[row_of[int(sample_ids[r])]]["image"],  # read only the rows shown
        labels,
        probs,
        loaded.label_names,
        args.explain,
        out / "explain",
        args.batch_size,
    )
    print(f"wrote {len(grids)} Grad-CAM grids to {out / 'explain'} (layer {explainer.layer})")
    log_images(wandb_run(accelerator), {f"explain/{name}": path for name, path in grids.items()})
