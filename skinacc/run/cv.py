"""Grouped, stratified K-fold cross-validation: K ordinary training runs and one report.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/train.py \\
        --config recipes/configs/dermoscopy.yaml --cv_folds 5 --test_size 0 --output_dir outputs/cv5
    accelerate launch ... recipes/train.py ... --cv_folds 5 --resume_from_checkpoint latest   # after a stop

Fold ``k`` is the run folder ``<output_dir>/fold_<k>``: a :class:`~skinacc.run.TrainingRun` with
``--cv_fold k``, validating (selection, early stopping, calibration) on its held-out fold and keeping its
model's predictions of that fold (:mod:`skinacc.run.oof`). Finished folds are kept when the command runs
again, a stopped one resumes from its checkpoint (``--resume_from_checkpoint latest``). Then the
out-of-fold predictions, one per image outside the test split, are scored once:
``<output_dir>/cv_report.json`` (per-fold metrics, mean ± sd, the out-of-fold metrics with
lesion-resampled CIs, the median model epoch for a final fit, a temperature fitted on the pooled
out-of-fold logits), ``<output_dir>/oof/`` (the evaluation files and ``clinical.json``) and
``<output_dir>/ensemble/``: the K fold models as one model (:mod:`skinacc.ensemble`).

A ``--test_size`` test split stays untouched: fold runs do not evaluate it (``--eval_test`` is off for
them); score it once, at the end, with the final model. With ``--push_to_hub`` the ensemble is what is
published, once, at the end (``<output_dir>/hub``); the fold runs publish nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.calibration import fit_temperature, view_disagreement_of
from skinacc.config import (
    ClinicalArguments,
    DataArguments,
    LoggingArguments,
    ModelArguments,
    TrainArguments,
    read_run_config,
)
from skinacc.ensemble import ENSEMBLE_DIR
from skinacc.evaluation import Predictions, report
from skinacc.metrics.report import HEADLINE, scalar_metrics
from skinacc.run.cv_models import write_cv_ensemble
from skinacc.run.oof import OOF_FILE, read_out_of_fold

__all__ = ["cv_report", "fold_dir", "run_cross_validation"]

#: The per-fold figures of the report (from each fold's eval_validation/metrics.json).
FOLD_METRICS = HEADLINE


def fold_dir(output_dir: str | Path, fold: int) -> Path:
    return Path(output_dir) / f"fold_{fold}"


def _finished(d: Path) -> bool:
    return (d / "summary.json").is_file() and (d / "eval_validation" / OOF_FILE).is_file()


def run_cross_validation(
    data_args: DataArguments,
    model_args: ModelArguments,
    args: TrainArguments,
    log_args: LoggingArguments,
    clinical_args: ClinicalArguments | None = None,
) -> dict[str, Any]:
    """Train every fold not yet finished (see the module docstring), then write the report.

    Returns:
        The report (``cv_report.json``'s content).
    """
    from accelerate import Accelerator

    from skinacc.run.training import TrainingRun

    out = Path(args.output_dir)
    # No accelerate state is made here before the first run's Accelerator: a bare PartialState would set
    # the launch up without the Accelerator's own reading of it (e.g. ACCELERATE_USE_CPU for gloo ranks).
    main = os.environ.get("RANK", "0") == "0"
    for k in range(data_args.cv_folds):
        d = fold_dir(out, k)
        if _finished(d) and not args.overwrite_output_dir:
            if main:
                print(f"fold {k}: finished earlier ({d}), kept")
            continue
        has_checkpoint = (d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir())
        fold_args = dataclasses.replace(
            args,
            output_dir=str(d),
            eval_test=False,  # the test split waits for the final model
            resume_from_checkpoint=args.resume_from_checkpoint if has_checkpoint else None,
        )
        if main:
            print(f"== fold {k + 1} of {data_args.cv_folds}: {d} ==")
        with TrainingRun(
            dataclasses.replace(data_args, cv_fold=k),
            model_args,
            fold_args,
            dataclasses.replace(log_args, push_to_hub=False),  # the ensemble is published, at the end
            clinical_args=clinical_args,
            end_process_group=False,  # the next fold runs in the same launch
        ) as run:
            run.run()
    state = Accelerator()  # the launch's (every fold's) state; one of its own if every fold was finished
    state.wait_for_everyone()
    report: dict[str, Any] = {}
    if state.is_main_process:
        report = cv_report(
            out, data_args.cv_folds, clinical_args or ClinicalArguments(), data_args.group_column
        )
    state.wait_for_everyone()
    state.end_training()  # the trackers and the process group of the whole launch
    if log_args.push_to_hub and main:  # after the process group: no rank waits on an upload
        from skinacc.hub import export_for_hub, push_folder_to_hub

        folder = export_for_hub(out / ENSEMBLE_DIR, out / "hub", log_args.hub_model_id, log_args.hub_license)
        url = push_folder_to_hub(folder, log_args.hub_model_id, log_args.hub_private)
        print(f"pushed the ensemble, {folder}, to the Hub: {url}")
    return report


def cv_report(
    out: Path, folds: int, clinical: ClinicalArguments, group_column: str | None = None
) -> dict[str, Any]:
    """Join the folds' out-of-fold predictions and score them once (main process).

    Raises:
        ValueError: A fold is missing, or an image is predicted by two folds.
    """
    from skinacc.rundir import CV_REPORT, write_json

    parts, per_fold, tta = _read_folds(out, folds)
    oof = _join(parts, group_column)
    summary = {
        f: {
            "mean": float(np.mean([r[f] for r in per_fold])),
            "sd": float(np.std([r[f] for r in per_fold], ddof=1)),
        }
        for f in FOLD_METRICS
    }
    epochs = [r["model_epoch"] for r in per_fold if r["model_epoch"]]
    oof_temperature = None
    if all("logits" in p for p in parts):
        # The temperature of a model that has no validation split left (a --final_fit, a soup): fitted on
        # the pooled out-of-fold logits, each image predicted by a model that never trained on it.
        oof_temperature = fit_temperature(np.concatenate([p["logits"] for p in parts]),
                                          np.concatenate([p["label"] for p in parts]))  # fmt: skip
    lines = [
        f"== {folds}-fold cross-validation: {len(oof)} images, each predicted once by the fold that held it out =="
    ]
    for r in per_fold:
        lines.append(f"  fold {r['fold']}: {r['images']} images, balanced accuracy {r['balanced_accuracy']:.4f}, "
                     f"accuracy {r['accuracy']:.4f} (model of epoch {r['model_epoch']})")  # fmt: skip
    for f, v in summary.items():
        lines.append(f"  {f:<20s} {v['mean']:.4f} ± {v['sd']:.4f} over folds")
    print("\n".join(lines))
    extra = {"split": f"out-of-fold ({folds} folds)", "folds": folds}
    result = report(oof, out / "oof", extra=extra, title="out-of-fold predictions", clinical=clinical)
    cv = {
        "folds": folds, "images": len(oof), "per_fold": per_fold, "fold_mean_sd": summary,
        "out_of_fold": scalar_metrics(result.metrics), "out_of_fold_ci": result.clinical["headline"],
        "ci_unit": result.clinical["bootstrap"]["unit"], "model_epochs": epochs,
        "final_fit_epochs": int(np.median(epochs)) if epochs else None,
        "oof_temperature": oof_temperature, "tta": tta,
    }  # fmt: skip
    write_json(out / CV_REPORT, cv)
    if oof_temperature is not None:
        print(f"  temperature fitted on the out-of-fold predictions (tta {tta}): {oof_temperature:.4f}")
    folder = write_cv_ensemble(out, folds, cv)
    print(f"wrote {out / CV_REPORT}, {out / 'oof'}/ and the {folds} fold models as one ensemble, {folder}/")
    return cv


def _read_folds(out: Path, folds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Every fold's out-of-fold file, its figures for the report, and the folds' one TTA."""
    parts, per_fold, ttas = [], [], set()
    for k in range(folds):
        d = fold_dir(out, k)
        if not _finished(d):
            raise ValueError(
                f"--cv_folds={folds}: fold {k} ({d}) has not finished; run the command again to train it"
            )
        parts.append(read_out_of_fold(d / "eval_validation" / OOF_FILE))
        m = json.loads((d / "eval_validation" / "metrics.json").read_text())
        s = json.loads((d / "summary.json").read_text())
        ttas.add(str(((read_run_config(d).get("train") or {}).get("tta")) or "none"))
        per_fold.append({"fold": k, "images": m["num_samples"], "model_epoch": s.get("model_epoch"),
                         **{f: m[f] for f in FOLD_METRICS}})  # fmt: skip
    if len(ttas) > 1:
        raise ValueError(f"the folds were trained with different --tta ({sorted(ttas)}): run them alike")
    if any(p["class_names"] != parts[0]["class_names"] for p in parts):
        raise ValueError("the folds' models have different classes: were they trained on the same data?")
    return parts, per_fold, ttas.pop()


def _join(parts: list[dict[str, Any]], group_column: str | None) -> Predictions:
    """The folds' held-out predictions as one record, in ``sample_id`` order.

    Raises:
        ValueError: An image is predicted by two folds.
    """
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("sample_id", "label", "probs", "path", "group")}
    columns = set.intersection(*(set(p["metadata"]) for p in parts))
    cat |= {f"meta:{c}": np.concatenate([p["metadata"][c] for p in parts]) for c in columns}
    views = [
        view_disagreement_of(p["logits"], float(p["temperature"])) if "logits" in p else None for p in parts
    ]
    if all(v is not None for v in views):  # every fold predicted several TTA views
        cat["disagreement"] = np.concatenate(views)
    ids, counts = np.unique(cat["sample_id"], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{int((counts > 1).sum())} images were held out by more than one fold")
    order = np.argsort(cat["sample_id"])
    cat = {k: v[order] for k, v in cat.items()}
    groups = cat["group"] if group_column and (cat["group"] != "").any() else None
    return Predictions(
        parts[0]["class_names"], cat["label"], cat["probs"], cat["sample_id"], list(cat["path"]),
        disagreement=cat.get("disagreement"), groups=groups,
        group_by=group_column if groups is not None else None,
        metadata={c: list(cat[f"meta:{c}"]) for c in columns},
    )  # fmt: skip
