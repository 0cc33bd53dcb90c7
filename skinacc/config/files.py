"""Config files: recipe YAML in, the resolved run config out; validation of a set of configs.

A YAML file may be flat (``lr: 0.001``) or grouped by section (``train: {lr: 0.001}``); unknown keys are
errors, so a typo never silently does nothing. Values are converted and checked as flags are, by
:func:`skinacc.config.parse.parse_config`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from skinacc.config.clinical import ClinicalArguments
from skinacc.config.data import DataArguments
from skinacc.config.fields import ConfigError
from skinacc.config.model import ModelArguments
from skinacc.config.tracking import LoggingArguments
from skinacc.config.train import TrainArguments

__all__ = [
    "RUN_CONFIG",
    "SECTIONS",
    "config_to_dict",
    "load_yaml_config",
    "read_run_config",
    "save_config",
    "validate",
]


#: A run config's sections, as saved in ``run_config.yaml`` and accepted as YAML groups.
SECTIONS: dict[str, type] = {
    "data": DataArguments,
    "model": ModelArguments,
    "train": TrainArguments,
    "logging": LoggingArguments,
    "clinical": ClinicalArguments,
}


def _field_owner(types: tuple[type, ...]) -> dict[str, type]:
    owner: dict[str, type] = {}
    for t in types:
        for f in fields(t):
            owner[f.name] = t
    return owner


def load_yaml_config(path: str | os.PathLike, types: tuple[type, ...]) -> dict[str, Any]:
    """Read a recipe YAML file into flat ``{field: value}`` defaults for ``types``.

    Args:
        path: The YAML file. Keys are field names, either at the top level or under a section
            (``data``, ``model``, ``train``, ``logging``, or a dataclass's own name).
        types: The dataclasses the recipe uses.

    Returns:
        Flat mapping of field name to value.

    Raises:
        ConfigError: The file is missing or malformed, or holds keys no dataclass knows (all listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config={str(path)!r}: no such file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config={str(path)!r}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(
            f"--config={str(path)!r}: expected a mapping of option: value, got {type(raw).__name__}"
        )
    owner = _field_owner(types)
    section_names = {k: t for k, t in SECTIONS.items() if t in types} | {t.__name__: t for t in types}
    flat: dict[str, Any] = {}
    problems: list[str] = []

    def put(key: str, value: Any, where: str) -> None:
        key = key.replace("-", "_")  # --data-dir and --data_dir are one option; so are their YAML keys
        if key not in owner:
            problems.append(f"{path}: unknown option {where}{key!r}")
        else:
            flat[key] = value

    for key, value in raw.items():
        if key in section_names and isinstance(value, dict):
            for k, v in value.items():
                put(k, v, f"{key}.")
        else:
            put(key, value, "")
    if problems:
        valid = ", ".join(sorted(owner))
        raise ConfigError("\n".join(problems) + f"\nValid options: {valid}")
    return flat


def validate(*configs: Any) -> None:
    """Validate every config and raise once with all problems.

    Raises:
        ConfigError: Listing each bad flag, its value and what is allowed.
    """
    problems: list[str] = []
    for c in configs:
        problems.extend(c.validate())
    data = next((c for c in configs if isinstance(c, DataArguments)), None)
    train = next((c for c in configs if type(c).__name__ == "TrainArguments"), None)
    if (
        data is not None
        and train is not None
        and data.streaming
        and getattr(train, "sampler", "") == "balanced"
    ):
        problems.append(
            "--sampler balanced draws rows by index, which a stream does not have: use --class_weighting "
            "balanced with --streaming (or train map-style)"
        )
    if data is not None and data.test_size == 0 and not (data.cv_folds or getattr(train, "final_fit", False)):
        problems.append(
            "--test_size=0 leaves no test split: use it with --final_fit (a final model on every image) or "
            "--cv_folds (out-of-fold predictions instead of a test split)"
        )
    if data is not None and data.cv_folds and getattr(train, "final_fit", False):
        problems.append(
            "--cv_folds and --final_fit: cross-validate first, then fit the final model without --cv_folds"
        )
    clinical = next((c for c in configs if isinstance(c, ClinicalArguments)), None)
    if clinical is not None and train is not None and (clinical.operating_point or clinical.abstain_coverage):
        flag = "--operating_point" if clinical.operating_point else "--abstain_coverage"
        if getattr(train, "final_fit", False):
            problems.append(
                f"{flag} is chosen on the validation split, which --final_fit trains on: choose it in the "
                "selection run"
            )
        elif data is not None and data.val_size == 0:
            problems.append(f"{flag} is chosen on the validation split: --val_size must be > 0")
    disagree = clinical is not None and clinical.abstain_score == "tta_disagreement"
    if disagree and train is not None and getattr(train, "tta", "none") == "none":
        problems.append(
            "--abstain_score tta_disagreement needs views to disagree: set --tta flip or dihedral"
        )
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


def config_to_dict(*configs: Any) -> dict[str, dict[str, Any]]:
    """Return ``{section: {field: value}}`` for saving and for the tracker."""
    rev = {t: k for k, t in SECTIONS.items()}
    return {rev.get(type(c), type(c).__name__): asdict(c) for c in configs if dataclasses.is_dataclass(c)}


#: A run's resolved configuration, beside its outputs (``.yaml`` and ``.json``). Not ``config.json``:
#: in the Hugging Face world that name means a model's config, which timm and transformers look for.
RUN_CONFIG = "run_config.yaml"


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved configuration a training run saved (``{}`` if none; also reads runs of skinacc < 0.2,
    which called it ``config.yaml``)."""
    for name in (RUN_CONFIG, "config.yaml"):
        f = Path(run_dir) / name
        if f.is_file():
            return yaml.safe_load(f.read_text()) or {}
    return {}


def save_config(path: str | os.PathLike, *configs: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved configuration as YAML (and JSON beside it) so a run can be reproduced.

    Args:
        path: Target ``.yaml`` file.
        *configs: The resolved dataclasses.
        extra: Additional sections (e.g. launch settings read from the accelerator).
    """
    from skinacc.rundir import disk_space_guard

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_to_dict(*configs) | (extra or {})
    for target, text in (
        (path, yaml.safe_dump(data, sort_keys=False)),
        (path.with_suffix(".json"), json.dumps(data, indent=2, default=str)),
    ):
        tmp = target.with_name(f".{target.name}.tmp")
        with disk_space_guard(
            target, f"writing {target.name}", len(text), partial=tmp, then="run the command again"
        ):
            tmp.write_text(text)
            os.replace(tmp, target)
    return path
