"""A trained model as a folder in timm's Hugging Face format, and loading one for inference.

A folder holds ``config.json`` (architecture, num_classes, label_names, pretrained_cfg with mean, std,
input size and crop; skinacc's TTA and temperature under ``skinacc``), ``model.safetensors`` and
``class_map.txt``. It loads with ``timm.create_model("local-dir:<folder>", pretrained=True)`` (or
``hf-hub:<repo>`` once pushed) and with transformers' ``pipeline("image-classification", model=<folder>)``.

``config.json`` deliberately carries no ``model_args.num_classes``: timm 1.0.31's ``save_for_hf`` writes
it, and transformers' TimmWrapper then fails with "got multiple values for keyword argument
'num_classes'".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import timm
import torch
from torch import nn

from skinacc.clinical.decision import DecisionRules
from skinacc.data.data_config import DataConfig, resolve_data_config
from skinacc.ensemble import ENSEMBLE_DIR, ENSEMBLE_FILE, is_ensemble, load_ensemble
from skinacc.rundir import atomic_folder

__all__ = [
    "CLASS_MAP",
    "SKINACC_KEY",
    "LoadedModel",
    "load_model",
    "resolve_model_spec",
    "save_timm_folder",
    "set_inference",
]


#: Key of skinacc's own block in a model's ``config.json``.
SKINACC_KEY = "skinacc"


#: Class names in classifier order, one per line: timm's ``--class-map`` format. timm's scripts sort
#: class folders naturally and case-insensitively, skinacc like torchvision; with the map both agree.
CLASS_MAP = "class_map.txt"


class LoadedModel(NamedTuple):
    """A classifier ready for inference, and how skinacc turns its logits into probabilities."""

    model: nn.Module
    label_names: list[str]
    data_cfg: DataConfig
    tta: str = "none"  # test-time augmentation its reported metrics used
    temperature: float = 1.0  # softmax temperature fitted by --calibrate (1: uncalibrated)
    decision: DecisionRules = DecisionRules()  # operating points / abstention chosen on validation


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
    with atomic_folder(folder) as tmp:
        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = _timm_config(model, label_names, data_cfg)
        if inference:
            cfg[SKINACC_KEY] = dict(inference)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        (tmp / CLASS_MAP).write_text("\n".join(label_names) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return folder


def set_inference(folder: str | os.PathLike, **settings: Any) -> dict[str, Any]:
    """Update skinacc's inference settings (``tta``, ``temperature``, ...) in a model folder's
    ``config.json`` (an ensemble folder's ``ensemble.json``), atomically. Returns the settings now stored."""
    if is_ensemble(folder):
        path = Path(folder) / ENSEMBLE_FILE
        cfg = json.loads(path.read_text())
        cfg.update(settings)
        block = cfg
    else:
        path = Path(folder) / "config.json"
        cfg = json.loads(path.read_text())
        cfg[SKINACC_KEY] = block = {**cfg.get(SKINACC_KEY, {}), **settings}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, path)
    return block


def resolve_model_spec(spec: str) -> str:
    """``local-dir:<folder>`` or ``hf-hub:<repo>`` for a run directory, timm folder, ensemble folder (or a
    cross-validation folder, whose ``ensemble/`` it is) or Hub id.

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
    # An ensemble folder, or a cross-validation folder's ensemble (skinacc.ensemble).
    for q in (p, p / ENSEMBLE_DIR):
        if is_ensemble(q):
            return f"local-dir:{q}"
    if p.exists() or spec.startswith((".", "/")):
        raise FileNotFoundError(
            f"--model={spec!r}: no config.json (timm format) in {p} or {p / 'best'}, and no "
            f"{ENSEMBLE_FILE} in {p} or {p / ENSEMBLE_DIR}"
        )
    return f"hf-hub:{spec}"


def load_model(spec: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a trained classifier for inference.

    Args:
        spec: A skinacc run directory (its ``best/`` export is used), a timm folder, ``local-dir:<folder>``,
            or ``hf-hub:<repo>`` / a Hub repo id (online); or an ensemble folder or cross-validation folder
            (:mod:`skinacc.ensemble`: the model is an :class:`~skinacc.ensemble.EnsembleModel`).
        device: Where to put the model.

    Returns:
        A :class:`LoadedModel`: the model in eval mode, label names, data config, and the stored
        test-time augmentation and temperature (``none`` and 1.0 for models that carry none).

    Raises:
        FileNotFoundError: A local path that holds no model.
    """
    name = resolve_model_spec(spec)
    folder = name[len("local-dir:") :] if name.startswith("local-dir:") else None
    if name.startswith("hf-hub:"):
        folder = _hub_ensemble(name[len("hf-hub:") :])
    if folder is not None and is_ensemble(folder):
        model, first, decision = load_ensemble(folder, lambda member: load_model(member, device))
        return LoadedModel(model.to(device).eval(), first.label_names, first.data_cfg, tta=first.tta,
                           temperature=1.0, decision=DecisionRules.from_dict(decision))  # fmt: skip
    model = timm.create_model(name, pretrained=True)
    settings = _inference_settings(name)
    cfg = model.pretrained_cfg
    labels = cfg.get("label_names") or [str(i) for i in range(model.num_classes)]
    # The model's own preprocessing, its stored crop ratio included (training's default ratio is the
    # seed's; an exported model records the one it was validated at).
    data_cfg = resolve_data_config(model, crop_pct=float(cfg.get("crop_pct", 0.875)))
    return LoadedModel(
        model.to(device).eval(),
        list(labels),
        data_cfg,
        tta=str(settings.get("tta", "none")),
        temperature=float(settings.get("temperature", 1.0)),
        decision=DecisionRules.from_dict(settings.get("decision")),
    )


def _hub_ensemble(repo: str) -> Path | None:
    """The local snapshot of a Hub repository that holds an ensemble (``skinacc push-to-hub`` of one), or
    None for a plain timm repository. Offline (``HF_HUB_OFFLINE=1``) the cache answers."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        hf_hub_download(repo, ENSEMBLE_FILE)
    except EntryNotFoundError:  # not in the repository (or, offline, not in the cache): a timm model
        return None
    return Path(snapshot_download(repo))


def _inference_settings(name: str) -> dict[str, Any]:
    """The ``skinacc`` block of a model's ``config.json`` (local folder, or the Hub's cached copy)."""
    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:") :]) / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        # timm has just read this file through the same cache: no second download.
        path = Path(hf_hub_download(name[len("hf-hub:") :], "config.json"))
    return dict(json.loads(path.read_text()).get(SKINACC_KEY) or {})
