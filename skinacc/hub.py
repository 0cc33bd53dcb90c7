"""Models in timm's Hugging Face Hub format: export, model card, load for inference, push.

A folder holds ``config.json`` (architecture, num_classes, label_names, pretrained_cfg with mean, std,
input size and crop), ``model.safetensors`` and a ``README.md`` model card. It loads with
``timm.create_model("local-dir:<folder>", pretrained=True)`` (or ``hf-hub:<repo>`` once pushed) and
with transformers' ``pipeline("image-classification", model=<folder>)``.

``config.json`` deliberately carries no ``model_args.num_classes``: timm 1.0.31's ``save_for_hf`` writes
it, and transformers' TimmWrapper then fails with "got multiple values for keyword argument
'num_classes'".
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import timm
import torch
from torch import nn

from skinacc.config import read_run_config
from skinacc.data.transforms import DataConfig

__all__ = [
    "CLASS_MAP",
    "SKINACC_KEY",
    "HubError",
    "LoadedModel",
    "export_for_hub",
    "load_model",
    "push_folder_to_hub",
    "read_model_card",
    "resolve_model_spec",
    "run_model_card",
    "save_timm_folder",
    "set_inference",
    "write_model_card",
]

logger = logging.getLogger(__name__)


#: Key of skinacc's own block in a model's ``config.json``.
SKINACC_KEY = "skinacc"
#: Class names in classifier order, one per line: timm's ``--class-map`` format. timm's scripts sort
#: class folders naturally and case-insensitively, skinacc like torchvision; with the map both agree.
CLASS_MAP = "class_map.txt"


class HubError(RuntimeError):
    """The Hugging Face Hub could not be reached or refused the request."""


class LoadedModel(NamedTuple):
    """A classifier ready for inference, and how skinacc turns its logits into probabilities."""

    model: nn.Module
    label_names: list[str]
    data_cfg: DataConfig
    tta: str = "none"  # test-time augmentation its reported metrics used
    temperature: float = 1.0  # softmax temperature fitted by --calibrate (1: uncalibrated)


def _timm_config(model: nn.Module, label_names: list[str], data_cfg: DataConfig) -> dict[str, Any]:
    src = dict(getattr(model, "pretrained_cfg", {}) or {})
    arch = src.get("architecture") or type(model).__name__.lower()
    pretrained_cfg = {
        "architecture": arch,
        "tag": src.get("tag"),
        "input_size": [3, data_cfg.image_size, data_cfg.image_size],
        "fixed_input_size": bool(src.get("fixed_input_size", False)),
        "interpolation": data_cfg.interpolation,
        "crop_pct": data_cfg.crop_pct,
        "crop_mode": "center",
        "mean": list(data_cfg.mean),
        "std": list(data_cfg.std),
        "num_classes": len(label_names),
        "pool_size": src.get("pool_size"),
        "first_conv": src.get("first_conv"),
        "classifier": src.get("classifier", "classifier"),
    }
    cfg = {
        "architecture": arch,
        "num_classes": len(label_names),
        "num_features": int(getattr(model, "num_features", 0)),
        "global_pool": getattr(getattr(model, "global_pool", None), "pool_type", None) or "avg",
        "label_names": list(label_names),
        "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v is not None},
    }
    return cfg


def save_timm_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    label_names: list[str],
    data_cfg: DataConfig,
    extra_files: dict[str, str] | None = None,
    inference: dict[str, Any] | None = None,
) -> Path:
    """Write a model in timm's Hub format, atomically (temp folder, then rename).

    Args:
        model: The (unwrapped) timm model.
        folder: Destination; replaced if it exists.
        label_names: Class names in classifier order.
        data_cfg: Preprocessing the model was trained with.
        extra_files: ``{file name: text}`` to add (e.g. ``README.md``, ``skinacc.json``).
        inference: skinacc's inference settings (``tta``, ``temperature``), stored under the key
            ``skinacc`` of ``config.json`` (timm and transformers ignore it; see :func:`set_inference`).

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if model.num_classes != len(label_names):
        raise ValueError(
            f"model has {model.num_classes} classes but {len(label_names)} label names were given"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = _timm_config(model, label_names, data_cfg)
        if inference:
            cfg[SKINACC_KEY] = dict(inference)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        (tmp / CLASS_MAP).write_text("\n".join(label_names) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        old = folder.with_name(f".old-{folder.name}")
        if folder.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def set_inference(folder: str | os.PathLike, **settings: Any) -> dict[str, Any]:
    """Update skinacc's inference settings (``tta``, ``temperature``, ...) in a model folder's
    ``config.json``, atomically. Returns the settings now stored."""
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    cfg[SKINACC_KEY] = {**cfg.get(SKINACC_KEY, {}), **settings}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, path)
    return cfg[SKINACC_KEY]


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


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    commit_message: str = "Upload skinacc model",
    repo_type: str = "model",
    flag: str = "--hub_model_id",
) -> str:
    """Create (if needed) and upload a model (or, with ``repo_type="dataset"``, a dataset) folder to the
    Hugging Face Hub. ``flag`` names the option that gave ``repo_id`` in errors.

    Returns:
        The URL of the commit.

    Raises:
        HubError: The Hub cannot be reached or refuses the upload (network, token, permissions).
    """
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=commit_message
        )
    except Exception as e:
        raise HubError(
            f"{flag}={repo_id!r}: upload of {folder} failed ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return str(getattr(info, "commit_url", info))


def resolve_model_spec(spec: str) -> str:
    """``local-dir:<folder>`` or ``hf-hub:<repo>`` for a run directory, timm folder or Hub id.

    Raises:
        FileNotFoundError: A local path that holds no model.
    """
    if spec.startswith(("local-dir:", "hf-hub:")):
        return spec
    p = Path(spec).expanduser()
    if (p / "best" / "config.json").is_file():
        p = p / "best"
    if (p / "config.json").is_file():
        return f"local-dir:{p}"
    if p.exists() or spec.startswith((".", "/")):
        raise FileNotFoundError(f"--model={spec!r}: no config.json (timm format) in {p} or {p / 'best'}")
    return f"hf-hub:{spec}"


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


def load_model(spec: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a trained classifier for inference.

    Args:
        spec: A skinacc run directory (its ``best/`` export is used), a timm folder, ``local-dir:<folder>``,
            or ``hf-hub:<repo>`` / a Hub repo id (online).
        device: Where to put the model.

    Returns:
        A :class:`LoadedModel`: the model in eval mode, label names, data config, and the stored
        test-time augmentation and temperature (``none`` and 1.0 for models that carry none).

    Raises:
        FileNotFoundError: A local path that holds no model.
    """
    name = resolve_model_spec(spec)
    model = timm.create_model(name, pretrained=True)
    settings = _inference_settings(name)
    cfg = model.pretrained_cfg
    labels = cfg.get("label_names") or [str(i) for i in range(model.num_classes)]
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    data_cfg = DataConfig(
        image_size=size,
        resize_size=round(size / crop_pct),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=cfg.get("interpolation", "bilinear"),
        crop_pct=crop_pct,
    )
    return LoadedModel(
        model.to(device).eval(),
        list(labels),
        data_cfg,
        tta=str(settings.get("tta", "none")),
        temperature=float(settings.get("temperature", 1.0)),
    )


def _inference_settings(name: str) -> dict[str, Any]:
    """The ``skinacc`` block of a model's ``config.json`` (local folder, or the Hub's cached copy)."""
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:") :]) / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        # timm has just read this file through the same cache: no second download.
        path = Path(hf_hub_download(name[len("hf-hub:") :], "config.json"))
    return dict(json.loads(path.read_text()).get(SKINACC_KEY) or {})


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
        training = {
            "architecture": mo.get("model"),
            "initial weights": rs.get("weights"),
            "frozen layer groups": mo.get("freeze_groups") or "none",
            "optimizer": f"{tr.get('optimizer')} ({optim})",
            "schedule": schedule + f", early stopping patience {tr.get('early_stopping_patience')}",
            "augmentation": da.get("augment", "seed"),
            "class balance": f"sampler {tr.get('sampler', 'random')}, loss weights {tr.get('class_weighting', 'none')}",
            "label smoothing": tr.get("label_smoothing"),
            "MixUp / CutMix": _mixing(tr),
            "EMA decay": tr.get("ema_decay"),
            "best model chosen on": "last epoch (final fit on train + validation)"
            if tr.get("final_fit")
            else "last epoch (--select_epoch last)"
            if tr.get("select_epoch") == "last"
            else f"validation {tr.get('select_metric', 'val_loss')}",
            "batch per process": tr.get("batch_size"),
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
            "test-time augmentation": tr.get("tta"),
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
    facts["training"] = {k: v for k, v in training.items() if v is not None}
    return facts


def run_model_card(run_dir: str | os.PathLike, repo_id: str | None = None, license: str | None = None) -> str:
    """The model card of a training run's best model (what :func:`export_for_hub` writes)."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "best" / "config.json").read_text())
    f = _card_facts(run_dir)
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
    )


def export_for_hub(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Build the Hub folder of a training run: its best model (timm format), ``class_map.txt`` and a
    model card.

    Args:
        run_dir: A skinacc output directory (with ``best/``, and ideally ``eval_test/`` and its run config).
        dest: Folder to write (replaced atomically).
        repo_id: Hub repository named in the card's usage snippet.
        license: The model's licence id for the card (None: ``other``, the data's terms apply).

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: The run has no exported best model.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    best = run_dir / "best"
    if not (best / "config.json").is_file() or not (best / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"--model={str(run_dir)!r}: no best/config.json and best/model.safetensors (train first)"
        )
    cfg = json.loads((best / "config.json").read_text())
    card = run_model_card(run_dir, repo_id, license)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        for name in ("config.json", "model.safetensors", CLASS_MAP):
            if (best / name).is_file():
                shutil.copy2(best / name, tmp / name)
        if not (tmp / CLASS_MAP).is_file():  # a model exported before class maps were written
            (tmp / CLASS_MAP).write_text("\n".join(cfg["label_names"]) + "\n")
        (tmp / "README.md").write_text(card)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
