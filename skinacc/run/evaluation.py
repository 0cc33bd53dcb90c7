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
from skinacc.clinical import DecisionRules, uncertainty, write_clinical
from skinacc.clinical.shift import ood_separation
from skinacc.config import DataArguments, LoggingArguments, read_run_config
from skinacc.config.clinical import ClinicalArguments
from skinacc.config.inference import EvalArguments
from skinacc.console import setup_logging
from skinacc.data import default_num_workers, load_data
from skinacc.data.plan import build_eval_plan
from skinacc.ensemble import ENSEMBLE_DIR, ENSEMBLE_FILE, is_ensemble
from skinacc.evaluation import PredictionLog, Predictions, evaluate, report, stress_test
from skinacc.inference import collect_images, iter_probs
from skinacc.predictor import Predictor, set_memory_format
from skinacc.run.clinical import choose_rules, store_rules, wants_rules
from skinacc.tracking import log_images, start_tracking, wandb_run

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
    # Logs and warnings once per job (main process); progress bars off with --disable_tqdm/TQDM_DISABLE.
    setup_logging(accelerator.is_main_process, log_args.disable_tqdm)
    job = _Evaluation(args, data_args, accelerator, external)
    job.start(log_args)
    rules = _decision_rules(
        args, clinical, job.loaded, job.data, job.to_model, job.predictor, accelerator, job.workers, data_args
    )
    images_per_sec = job.predict()
    flips = (
        stress_test(accelerator, job.predictor, job.plan.loader) if args.stress and job.plan.size else None
    )
    scalars = job.write(clinical, rules, images_per_sec, flips) if accelerator.is_main_process else {}
    accelerator.end_training()
    return scalars


class _Evaluation:
    """One ``evaluate`` job: the model at its size, the data matched to its classes, the plan of what
    is left to predict (``--resume``) and the predictions written to disk as they come."""

    def __init__(self, args: EvalArguments, data_args: DataArguments, accelerator, external: bool):
        self.args, self.data_args, self.accelerator = args, data_args, accelerator
        self.split = args.split or ("all" if external else "test")
        run_dir = Path(args.model)
        self.source = data_args.data_dir or data_args.dataset_name
        self.tag = Path(self.source).name if external and self.split == "all" else self.split
        default_out = run_dir / f"eval_{self.tag}" if run_dir.is_dir() else f"outputs/eval_{self.tag}"
        self.out = Path(args.output_dir or default_out)
        self.loaded = _at_requested_size(load_model(args.model), data_args, accelerator)
        if data_args.streaming and args.explain:
            raise ValueError(
                "--explain reads chosen images back by row, which a stream cannot: drop --streaming"
            )
        with accelerator.main_process_first():
            self.data = load_data(data_args, known_classes=self.loaded.label_names)
        self.to_model = _model_columns(self.data, self.loaded.label_names, data_args, args.model)
        self.tta = args.tta or self.loaded.tta
        self.temperature = args.temperature or self.loaded.temperature
        self.workers = default_num_workers(data_args.num_workers, accelerator.num_processes)

    def start(self, log_args: LoggingArguments) -> None:
        """Open the prediction log (continued with ``--resume``), plan the images left, prepare the
        model and start tracking."""
        args, acc, cfg = self.args, self.accelerator, self.loaded.data_cfg
        # Results go to disk batch by batch (flat memory); --resume skips the images already there.
        self.log = PredictionLog(self.out / PARTIAL, len(self.loaded.label_names))
        settings = {"model": str(args.model), "split": self.split, "source": str(self.source), "tta": self.tta,
                    "temperature": self.temperature, "image_size": cfg.image_size,
                    "resize_size": cfg.resize_size, "format": 2}  # fmt: skip
        done = self.log.start(settings, args.resume) if acc.is_main_process else None
        done = set(broadcast_object_list([None if done is None else done.tolist()])[0])
        if done:
            acc.print(f"--resume: {len(done)} images already evaluated in {self.log.path}")
        self.plan = build_eval_plan(acc, self.data, self.split, cfg, args.batch_size, self.workers, skip=done,
                                    pin_memory=self.data_args.pin_memory)  # fmt: skip
        if args.channels_last:
            set_memory_format(self.loaded.model, True)  # in place, as training's --channels_last
        self.model = acc.prepare(self.loaded.model)
        config = {"eval": vars(args), "data": vars(self.data_args), "label_names": self.loaded.label_names}
        name = f"eval-{Path(args.model).name}-{self.tag}"
        start_tracking(acc, log_args, config, self.out, "eval", name, tags=["eval", self.tag])
        self.predictor = Predictor(self.model, cfg, tta=self.tta, temperature=self.temperature,
                                   device=acc.device, channels_last=args.channels_last,
                                   autocast=acc.autocast)  # fmt: skip

    def predict(self) -> float:
        """Predict the planned images into the log; images per second."""
        if not self.plan.size:
            return 0.0
        acc, predictor = self.accelerator, self.predictor

        def write(z: np.ndarray, y: np.ndarray, ids: np.ndarray) -> None:
            if acc.is_main_process:
                self.log.append(ids, y, predictor.probs(z), predictor.disagreement(z))

        return evaluate(
            acc, predictor, self.plan.loader, desc=self.tag, on_batch=write, keep=False
        ).images_per_sec

    def predictions(self, columns) -> Predictions:
        """Everything in the log (this run's and a resumed one's) as a record, in the model's classes."""
        rec = self.log.records()
        ids = rec["sample_id"].copy()
        return Predictions.from_table(
            self.plan.table,
            class_names=self.loaded.label_names,
            labels=self.to_model[rec["label"]],
            probs=rec["probs"].astype(np.float64),
            sample_ids=ids,
            paths=self.plan.paths(ids),
            disagreement=rec["disagreement"].astype(np.float64) if self.tta != "none" else None,
            group_column=self.data_args.group_column,
            columns=columns,
            streaming=self.plan.streaming,
            metadata_file=self.data_args.metadata_file,
            root=self.data.report.root,
        )

    def write(self, clinical, rules: DecisionRules, images_per_sec: float, flips) -> dict[str, float]:
        """The report, the shift analyses and the ``--explain`` grids (main process); the scalars."""
        args, data, cfg, out = self.args, self.data, self.loaded.data_cfg, self.out
        pred = self.predictions(clinical.subgroup_columns)
        extra = {"model": args.model, "split": self.split, "tta": self.tta, "temperature": self.temperature,
                 "image_size": cfg.image_size, "resize_size": cfg.resize_size,
                 "data_source": data.report.source + (f" ({data.report.root})" if data.report.root else ""),
                 "classes_in_data": data.class_names, "images_per_sec": images_per_sec,
                 "num_processes": self.accelerator.num_processes}  # fmt: skip
        title = f"{args.model} on {self.tag}, tta {self.tta}, temperature {self.temperature:.3f}"
        result = report(pred, out, extra=extra, title=title, clinical=clinical, rules=rules,
                        accelerator=self.accelerator, tag=self.tag)  # fmt: skip
        print(f"wrote {out}/metrics.json, per_class.csv, predictions.csv, clinical.json and plots")
        score = result.clinical["selective"]["score"]
        unc = uncertainty(pred.probs, score, pred.disagreement)
        shift = _shift(args, self.predictor, self.workers, unc, score, flips)
        if shift:
            result.clinical["shift"] = shift
            write_clinical(out, result.clinical)
        self.log.remove()  # the results are in predictions.csv, metrics.json, clinical.json and the figures now
        if args.explain:
            _explain(args, self.accelerator.unwrap_model(self.model), self.loaded, self.temperature, self.plan,
                     pred.sample_ids, pred.labels, pred.probs, out, self.accelerator)  # fmt: skip
        return result.scalars()


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
