"""The models a cross-validation leaves (:mod:`skinacc.ensemble`): its fold models as one ensemble, the
weight-averaged soups, and the out-of-fold temperature a final fit or a soup takes from it.

    skinacc ensemble --cv_dir outputs/cv5                 # (re)write outputs/cv5/ensemble
    skinacc ensemble --cv_dir outputs/cv5 --soup both     # and outputs/cv5/soup_uniform, soup_greedy
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from skinacc.ensemble import ENSEMBLE_DIR, greedy_soup, save_ensemble, soup_state_dict
from skinacc.rundir import oof_temperature, read_cv_report

__all__ = ["build_soups", "ensemble_card", "write_cv_ensemble"]


def write_cv_ensemble(cv_dir: Path, folds: int, report: dict[str, Any]) -> Path:
    """The fold models of ``cv_dir`` as one ensemble folder, ``<cv_dir>/ensemble`` (with its model card)."""
    cv_dir = Path(cv_dir)
    members = [cv_dir / f"fold_{k}" / "best" for k in range(folds)]
    configs = [json.loads((m / "config.json").read_text()) for m in members]
    info = {"cross_validation": {k: report.get(k) for k in ("folds", "images", "out_of_fold_ci", "ci_unit",
                                                             "oof_temperature", "tta")}}  # fmt: skip
    return save_ensemble(
        members,
        cv_dir / ENSEMBLE_DIR,
        names=[f"fold_{k}" for k in range(folds)],
        run_config=cv_dir / "fold_0" / "run_config.yaml",
        card=ensemble_card(report, configs),
        info=info,
    )


def _ci(report: dict[str, Any], metric: str) -> str:
    v = (report.get("out_of_fold_ci") or {}).get(metric)
    if not v:
        return "n/a"
    return f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


def ensemble_card(report: dict[str, Any], configs: list[dict[str, Any]]) -> str:
    """The ensemble's ``README.md``: what it is, what its figures are of, and how to use it."""
    k, n = report["folds"], report["images"]
    arch = configs[0]["pretrained_cfg"].get("architecture")
    size = configs[0]["pretrained_cfg"].get("input_size", [0, 0, 0])[-1]
    rows = "\n".join(
        f"| fold_{r['fold']} | {r['images']} | {r['balanced_accuracy']:.3f} | {r['accuracy']:.3f} | "
        f"{r.get('model_epoch')} | {(c.get('skinacc') or {}).get('temperature', 1.0):.3f} |"
        for r, c in zip(report["per_fold"], configs)
    )
    classes = ", ".join(configs[0]["label_names"])
    return f"""---
library_name: skinacc
tags: [image-classification, dermatology, skin-lesion, ensemble, cross-validation]
---
# Ensemble of the {k} fold models of a {k}-fold cross-validation

**What it is.** {k} `{arch}` classifiers ({size} px, classes: {classes}). Fold model *i* was trained on
the {n} cross-validated images except fold *i* (whole lesions per fold), so together they have seen every
one of them. The ensemble's probability is the mean of the members' softmaxes, each at its own
test-time augmentation (`{report.get("tta", "none")}`) and temperature (fitted on the fold it held out).

**What its figures are of.** The out-of-fold figures below are of *single members* on images they never
saw: balanced accuracy {_ci(report, "balanced_accuracy")}, accuracy {_ci(report, "accuracy")}, macro
ROC AUC {_ci(report, "roc_auc_macro")} ({report.get("ci_unit", "images")} resampled). The ensemble has
seen every image here, so nothing in this folder estimates its own accuracy: measure it on images none
of the members saw (`skinacc evaluate --model <this folder> --data_dir <other images>`).

| member | images held out | balanced accuracy | accuracy | epoch | temperature |
|---|---:|---:|---:|---:|---:|
{rows}

**Use.** `skinacc evaluate|predict|app --model <this folder>` (or the cross-validation folder). Each
member is a timm folder: `timm.create_model("local-dir:<this folder>/members/fold_0", pretrained=True)`.
There are no decision rules here: thresholds chosen for single members do not carry over to averaged
probabilities; choose them on images the ensemble never saw (`skinacc evaluate --model <this folder>
--operating_point malignant:sensitivity=0.95 --save_rules` on such a validation split).

**Limitations.** A research model from a small dermoscopy set, not a medical device; it has not been
validated prospectively or across skin tones, cameras or clinics.
"""


def build_soups(
    cv_dir: str | Path, methods: list[str], data_args, *, batch_size: int = 128, accelerator=None
) -> dict[str, Any]:
    """Write ``<cv_dir>/soup_<method>`` for each of ``methods`` (``uniform``, ``greedy``): one timm folder
    each, with the cross-validation's test-time augmentation and out-of-fold temperature.

    Args:
        cv_dir: A finished ``--cv_folds`` output folder.
        methods: Which soups.
        data_args: The cross-validation's data (greedy scores candidate soups on its images outside the
            test split, without test-time augmentation: an in-sample check, see :mod:`skinacc.ensemble`).
        batch_size: Evaluation batch size.
        accelerator: An ``Accelerator`` (default: a new one, on the GPU where there is one).

    Returns:
        ``{method: {"folder", "ingredients", "greedy_log"?}}``.
    """
    from skinacc.artifact import load_model, save_timm_folder

    cv_dir = Path(cv_dir)
    report = read_cv_report(cv_dir)
    temperature, tta = oof_temperature(cv_dir)
    folds = int(report["folds"])
    members = [load_model(f"local-dir:{cv_dir / f'fold_{k}' / 'best'}") for k in range(folds)]
    sds = [{k: v.detach().cpu() for k, v in m.model.state_dict().items()} for m in members]
    names, data_cfg = members[0].label_names, members[0].data_cfg
    run_config = (cv_dir / ENSEMBLE_DIR / "run_config.yaml").read_text()
    result: dict[str, Any] = {}
    for method in methods:
        if method == "uniform":
            kept, log = list(range(folds)), None
        else:
            score = _soup_scorer(members[0].model, data_args, names, data_cfg, batch_size, accelerator)
            ranking = [r["balanced_accuracy"] for r in report["per_fold"]]
            kept, log = greedy_soup(sds, ranking, score)
        model = copy.deepcopy(members[0].model)
        model.load_state_dict(soup_state_dict([sds[i] for i in kept]))
        soup = {"method": method, "ingredients": [f"fold_{i}" for i in kept], "greedy_log": log}
        card = _soup_card(method, kept, report, temperature, tta)
        folder = save_timm_folder(
            model, cv_dir / f"soup_{method}", names, data_cfg,
            extra_files={"README.md": card, "run_config.yaml": run_config},
            inference={"tta": tta, "temperature": temperature, "calibrated_on": "out-of-fold predictions",
                       "soup": soup},
        )  # fmt: skip
        result[method] = {"folder": str(folder), **soup}
    return result


def _soup_scorer(model, data_args, names, data_cfg, batch_size, accelerator):
    """Balanced accuracy of a state dict on the cross-validated images (train + validation, one view)."""
    from accelerate import Accelerator

    from skinacc.data import default_num_workers, load_data
    from skinacc.data.plan import build_eval_plan
    from skinacc.evaluation import evaluate
    from skinacc.metrics import compute_all
    from skinacc.predictor import Predictor

    acc = accelerator or Accelerator()  # the GPU where there is one
    data = load_data(data_args, known_classes=names)
    if list(data.class_names) != list(names):
        raise ValueError(f"the data's classes {data.class_names} are not the models' {names}")
    workers = default_num_workers(data_args.num_workers, acc.num_processes)
    loaders = [
        build_eval_plan(acc, data, s, data_cfg, batch_size, workers).loader for s in ("train", "validation")
    ]
    work = copy.deepcopy(model).to(acc.device).eval()
    predictor = Predictor(work, data_cfg, device=acc.device)

    def score(sd) -> float:
        work.load_state_dict(sd)
        outs = [evaluate(acc, predictor, loader, desc="soup") for loader in loaders]
        labels = np.concatenate([o.labels for o in outs])
        probs = np.concatenate([o.probs for o in outs])
        return float(compute_all(labels, probs, names)["balanced_accuracy"])

    return score


def _soup_card(method: str, kept: list[int], report: dict[str, Any], temperature: float, tta: str) -> str:
    how = ("all fold models" if method == "uniform" else
           "the fold models kept by greedy selection (ranked by out-of-fold balanced accuracy, each kept if "
           "the soup's balanced accuracy on the cross-validated images did not drop: an in-sample check)")  # fmt: skip
    return f"""---
library_name: timm
tags: [image-classification, dermatology, skin-lesion, model-soup, cross-validation]
---
# A {method} weight soup of a {report["folds"]}-fold cross-validation

The weights (BatchNorm statistics included) are the average of {how}: folds
{", ".join(str(i) for i in kept)}. It is one plain timm model: `timm.create_model("local-dir:<this folder>",
pretrained=True)`. skinacc uses test-time augmentation `{tta}` and temperature {temperature:.3f}, fitted on
the cross-validation's pooled out-of-fold predictions (no validation split is left for the soup itself).

The soup has seen every cross-validated image, so nothing here estimates its accuracy; the single fold
models' out-of-fold balanced accuracy was {_ci(report, "balanced_accuracy")}. Measure the soup on images
none of the fold models saw before trusting it (BENCHMARKS.md reports whether soups held up on the shared
ISIC set). A research model, not a medical device.
"""
