"""The model card of a trained model: ``huggingface_hub``'s ``ModelCard`` with the run's test metrics as
eval results, its training set-up, intended use and limitations (not a medical device).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from skinacc.artifact import resolve_model_spec
from skinacc.config import card_facts, read_run_config

__all__ = ["read_model_card", "run_model_card", "write_model_card"]

logger = logging.getLogger(__name__)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_model_card(
    label_names: list[str],
    architecture: str,
    metrics: dict[str, float] | None = None,
    training: dict[str, Any] | None = None,
    dataset: str = "unspecified",
    repo_id: str | None = None,
    license: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    clinical: str | None = None,
) -> str:
    """A model card (``README.md`` with Hub metadata) for a skin-lesion classifier, built with
    ``huggingface_hub``'s ``ModelCard``/``ModelCardData``/``EvalResult``.

    Args:
        label_names: Classes, in classifier order.
        architecture: timm architecture name.
        metrics: Test metrics (e.g. ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_micro``).
        training: Training set-up (epochs, batch, processes, precision, lr, split sizes, ...).
        dataset: Name of the training data.
        repo_id: Hub repository id, used in the usage snippet.
        license: The model's licence id (e.g. ``cc-by-nc-sa-4.0`` for a model trained on HAM10000);
            None writes ``other`` and says the training data's terms apply.
        base_model: Hub id of the starting weights, when they came from the Hub.
        datasets: Hub ids of the training data, when it came from the Hub.
        clinical: The clinical evaluation's section (:func:`clinical_section`), when there is one.

    Returns:
        Markdown text with a YAML front matter.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = metrics or {}
    training = training or {}
    name = repo_id or "<repo-or-folder>"
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=(datasets or ["imagefolder"])[0],
            dataset_name=dataset,
            dataset_split="test",
            metric_type=k,
            metric_name=k,
            metric_value=float(v),
        )
        for k, v in metrics.items()
        if isinstance(v, int | float)
    ]
    data = ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=license or "other",
        base_model=base_model,
        datasets=datasets,
        tags=["image-classification", "timm", "skinacc", "dermatology"],
        model_name=name,
        eval_results=results or None,
    )
    metric_table = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items()) or "| (not evaluated) | |"
    train_table = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in training.items()) or "| (not recorded) | |"
    classes = ", ".join(f"`{c}`" for c in label_names)
    licence = (
        f"Licence: `{license}`."
        if license
        else "Licence: not set when this card was written (`--hub_license`); the terms of the training data apply."
    )
    body = f"""
# {name}

A `{architecture}` skin-lesion image classifier over {len(label_names)} classes, trained with
[skinacc](https://github.com/skinacc/skinacc) (Hugging Face Accelerate + timm) on **{dataset}**.
{licence}

**Not a medical device.** This model is for research and education. It has not been clinically
validated, must not be used to diagnose, treat or triage patients, and can be confidently wrong,
especially on skin tones, devices, body sites and conditions under-represented in its training data.

## Classes
{classes}

## Test metrics
| metric | value |
|---|---|
{metric_table}

{clinical or ""}
## Training set-up
| setting | value |
|---|---|
{train_table}

## Usage
```python
import timm, torch
model = timm.create_model("hf-hub:{name}", pretrained=True).eval()   # or "local-dir:<folder>"
cfg = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**cfg, is_training=False)
# probs = model(transform(img).unsqueeze(0)).softmax(-1)
```
```python
from transformers import pipeline
clf = pipeline("image-classification", model="{name}")
```
timm's own scripts sort class folders differently from skinacc: pass the shipped `class_map.txt`, e.g.
`python validate.py <data> --model hf-hub:{name} --class-map class_map.txt`.
skinacc's `predict.py`/`evaluate.py` also apply the test-time augmentation and calibrated temperature
stored under `skinacc` in `config.json`; timm and transformers give the uncalibrated single-view probabilities.

## Intended use and limitations
- Intended for research on automated skin-lesion classification and for benchmarking training set-ups.
- Trained on the images named above; performance on other populations, cameras or lesion types is unknown.
- Class balance in training does not reflect clinical prevalence; probabilities are not clinical risks.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def clinical_section(report: dict[str, Any], rules: list[str]) -> str:
    """The model card's "Clinical evaluation" section: the decision rules stored with the model and the
    test split's figures with their confidence intervals (``clinical.json``)."""

    def iv(v: dict[str, float]) -> str:
        return f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"

    b = report["bootstrap"]
    unit = "images" if b["unit"] == "image" else f"whole {b['unit']} groups"
    rows = [f"| {k} | {iv(v)} |" for k, v in report["headline"].items()]
    for name, g in report.get("label_groups", {}).items():
        rows += [f"| {name} vs rest: {k} | {iv(v)} |" for k, v in g.items() if isinstance(v, dict)]
    for op in report.get("operating_points", []):
        rows += [
            f"| {op['rule']} (threshold {op['threshold']:.4f}, chosen on {op['chosen_on']}): {k} | {iv(op[k])} |"
            for k in ("sensitivity", "specificity", "ppv", "npv")
        ]
    rule_text = "\n".join(f"- {r}" for r in rules) if rules else "- none stored"
    return f"""
## Clinical evaluation (test split)
{b["images"]} images; {b["level"]:.0%} confidence intervals from {b["resamples"]} bootstrap resamples of {unit}.

| metric | value [{b["level"]:.0%} CI] |
|---|---|
{chr(10).join(rows)}

Decision rules stored with the model (applied by `skinacc predict` and the web demo; thresholds on the
model's own probabilities, not a diagnosis):
{rule_text}
"""


def read_model_card(spec: str) -> str | None:
    """The model card (``README.md``) of a model, or None when it has none (or the Hub is unreachable).

    A training run's directory gets the card its export would carry (:func:`run_model_card`).
    """
    name = resolve_model_spec(spec)
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :])
        if (folder / "README.md").is_file():
            return (folder / "README.md").read_text()
        run_dir = folder.parent
        if folder.name == "best" and any(
            (run_dir / f).is_file() for f in ("run_config.json", "summary.json")
        ):
            return run_model_card(run_dir)
        return None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name[len("hf-hub:") :], "README.md")).read_text()
    except Exception as e:  # no card, or offline without a cached copy: the caller says "unknown"
        logger.warning("no model card for %s: %s", spec, e)
        return None


def _input_size(resolved: dict[str, Any]) -> str | int | None:
    """Training input size, and the evaluation/serving size when --eval_image_size made it differ."""
    train = (resolved.get("data_config") or {}).get("image_size")
    served = (resolved.get("eval_data_config") or {}).get("image_size", train)
    return train if served == train else f"{train} (training), {served} (validation, test, inference)"


def _mixing(train: dict[str, Any]) -> str | None:
    """MixUp/CutMix settings of a run, or None when it mixed nothing."""
    parts = [
        f"{n} alpha {train[k]}"
        for n, k in (("MixUp", "mixup_alpha"), ("CutMix", "cutmix_alpha"))
        if train.get(k)
    ]
    if not parts:
        return None
    return ", ".join(parts) + f", {train.get('mix_prob', 1.0):g} of batches"


def _card_facts(run_dir: Path) -> dict[str, Any]:
    """Test metrics, training set-up, data name and Hub ids of a skinacc run directory."""
    metrics: dict[str, float] = {}
    mfile = run_dir / "eval_test" / "metrics.json"
    if mfile.is_file():
        m = json.loads(mfile.read_text())
        keys = (
            "accuracy",
            "balanced_accuracy",
            "macro_f1",
            "weighted_f1",
            "roc_auc_micro",
            "roc_auc_macro",
            "ece",
            "top_3_accuracy",
        )
        metrics = {k: float(m[k]) for k in keys if k in m}
    training: dict[str, Any] = {}
    facts: dict[str, Any] = {
        "metrics": metrics,
        "dataset": "unspecified",
        "base_model": None,
        "datasets": None,
    }
    cfg = read_run_config(run_dir)
    if cfg:
        tr, mo, da, la, rs = (cfg.get(k, {}) for k in ("train", "model", "data", "launch", "resolved"))
        sizes = rs.get("split_sizes") or {}
        schedule = (
            f"cosine, {tr.get('warmup_epochs')} warm-up epochs, to {tr.get('min_lr')}"
            if tr.get("scheduler") == "cosine"
            else f"ReduceLROnPlateau on {tr.get('select_metric', 'val_loss')} (factor {tr.get('plateau_factor')}, patience {tr.get('plateau_patience')})"
        )
        optim = f"lr {tr.get('lr')}, weight decay {tr.get('weight_decay')}"
        if tr.get("layer_decay") not in (None, 1.0):
            optim += f", layer-wise lr decay {tr['layer_decay']}"
        plain = card_facts(cfg)  # the rows that are one option each, labelled on the option itself
        training = {
            "architecture": plain["architecture"],
            "initial weights": rs.get("weights"),
            "frozen layer groups": mo.get("freeze_groups") or "none",
            "optimizer": f"{tr.get('optimizer')} ({optim})",
            "schedule": schedule + f", early stopping patience {tr.get('early_stopping_patience')}",
            "augmentation": plain["augmentation"],
            "class balance": f"sampler {tr.get('sampler', 'random')}, loss weights {tr.get('class_weighting', 'none')}",
            "label smoothing": plain["label smoothing"],
            "MixUp / CutMix": _mixing(tr),
            "EMA decay": plain["EMA decay"],
            "best model chosen on": "last epoch (final fit on train + validation)"
            if tr.get("final_fit")
            else "last epoch (--select_epoch last)"
            if tr.get("select_epoch") == "last"
            else f"validation {tr.get('select_metric', 'val_loss')}",
            "batch per process": plain["batch per process"],
            "processes": la.get("num_processes"),
            "global batch": rs.get("global_batch_size"),
            "mixed precision": la.get("mixed_precision"),
            "input size": _input_size(rs),
            "split": f"test {da.get('test_size')}, validation {da.get('val_size')} of train, seed {da.get('split_seed')}"
            + (f", grouped by {da.get('group_column')}" if da.get("group_column") else ""),
            "images (train / validation / test)": " / ".join(
                str(sizes.get(k, "?")) for k in ("train", "validation", "test")
            )
            if sizes
            else None,
            "training subset": f"capped at {da['max_train_samples']} images (--max_train_samples)"
            if da.get("max_train_samples")
            else None,
            "test-time augmentation": plain["test-time augmentation"],
        }
        name = da.get("dataset_name")
        facts["dataset"] = name or (
            Path(da["data_dir"]).name
            if da.get("data_dir")
            else "skinacc synthetic demo set (not real skin images)"
        )
        if name and not Path(name).expanduser().exists():  # a Hub dataset id, not a local save_to_disk folder
            facts["datasets"] = [name]
        facts["base_model"] = rs.get("base_model")
    sfile = run_dir / "summary.json"
    if sfile.is_file():
        sm = json.loads(sfile.read_text())
        training["epochs run"] = sm.get("epochs_run")
        # skinacc < 0.2 wrote the model's epoch as best_epoch (on --select_epoch last runs too).
        training["epoch of the model"] = sm.get("model_epoch", sm.get("best_epoch"))
        if sm.get("best_epoch") is not None and "model_epoch" in sm and sm["best_epoch"] != sm["model_epoch"]:
            training[f"best validation {sm.get('select_metric')} at epoch"] = sm["best_epoch"]
        if "calibration_val_temperature" in sm:
            training["temperature (fitted on validation)"] = round(
                float(sm["calibration_val_temperature"]), 4
            )
        if "calibration_oof_temperature" in sm:
            training["temperature (fitted on cross-validation's out-of-fold predictions)"] = round(
                float(sm["calibration_oof_temperature"]), 4
            )
    facts["training"] = {k: v for k, v in training.items() if v is not None}
    return facts


def run_model_card(run_dir: str | os.PathLike, repo_id: str | None = None, license: str | None = None) -> str:
    """The model card of a training run's best model (what :func:`export_for_hub` writes)."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "best" / "config.json").read_text())
    f = _card_facts(run_dir)
    clinical = None
    cfile = run_dir / "eval_test" / "clinical.json"
    if cfile.is_file():
        from skinacc.clinical import DecisionRules

        rules = DecisionRules.from_dict(cfg.get("skinacc", {}).get("decision")).describe()
        clinical = clinical_section(json.loads(cfile.read_text()), rules)
    return write_model_card(
        cfg["label_names"],
        cfg["architecture"],
        f["metrics"],
        f["training"],
        f["dataset"],
        repo_id,
        license=license,
        base_model=f["base_model"],
        datasets=f["datasets"],
        clinical=clinical,
    )
