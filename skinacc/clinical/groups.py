"""Label groups: clinical questions asked of a multi-class model, e.g. "malignant or benign?".

A group is a set of the model's classes; its probability is the sum of theirs (the model's own
probability that the image belongs to any of them), its complement is the rest. ``--label_groups``:

- ``auto`` (default): :data:`ISIC_GROUPS` when the model knows at least one of their classes (and not
  only those), else no groups;
- ``isic``: :data:`ISIC_GROUPS`, an error if the model knows none of their classes;
- ``none``: no groups;
- a YAML or JSON file mapping a group name to its class names::

      malignant: [melanoma, basal cell carcinoma, squamous cell carcinoma]
      melanoma: [melanoma]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ISIC_GROUPS", "LabelGroup", "group_scores", "resolve_label_groups"]

#: The malignant lesions among the ISIC Archive's diagnoses, each with the spellings datasets use (ISIC
#: 2019's codes, HAM10000's ``dx`` codes). Actinic keratosis is HAM10000's ``akiec``: "actinic
#: keratoses and intraepithelial carcinoma (Bowen's disease)", which Tschandl et al. (Sci Data 2018)
#: and the ISIC 2018/2019 challenges count with the malignant lesions (a precursor of squamous cell
#: carcinoma, treated rather than watched).
ISIC_GROUPS: dict[str, list[tuple[str, ...]]] = {
    "malignant": [
        ("melanoma", "mel"),
        ("basal cell carcinoma", "bcc"),
        ("squamous cell carcinoma", "scc"),
        ("actinic keratosis", "actinic keratoses", "akiec", "ak"),
    ],
}


@dataclass(frozen=True)
class LabelGroup:
    """A named set of the model's output columns."""

    name: str
    classes: tuple[int, ...]

    def members(self, class_names: Sequence[str]) -> list[str]:
        return [class_names[c] for c in self.classes]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _isic(class_names: Sequence[str], required: bool) -> list[LabelGroup]:
    index = {_norm(n): i for i, n in enumerate(class_names)}
    groups = []
    for name, members in ISIC_GROUPS.items():
        ids = sorted({index[s] for spellings in members for s in spellings if s in index})
        if ids and len(ids) < len(class_names):
            groups.append(LabelGroup(name, tuple(ids)))
    if required and not groups:
        raise ValueError(
            f"--label_groups=isic: the model's classes {list(class_names)} include none of the ISIC "
            "malignant classes (melanoma, basal cell carcinoma, squamous cell carcinoma, actinic "
            "keratosis); give a YAML file of your own groups"
        )
    return groups


def _from_file(path: str, class_names: Sequence[str]) -> list[LabelGroup]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"--label_groups={path!r}: not a file; expected auto, isic, none or a YAML/JSON file"
        )
    text = p.read_text()
    if p.suffix.lower() == ".json":
        raw = json.loads(text)
    else:
        import yaml

        raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--label_groups={path!r}: expected a mapping of group name -> list of class names")
    index = {_norm(n): i for i, n in enumerate(class_names)}
    groups, problems = [], []
    for name, members in raw.items():
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or not members:
            problems.append(f"group {name!r}: expected a non-empty list of class names")
            continue
        unknown = [m for m in members if _norm(m) not in index]
        if unknown:
            problems.append(f"group {name!r}: unknown class(es) {unknown}")
            continue
        ids = sorted({index[_norm(m)] for m in members})
        if len(ids) == len(class_names):
            problems.append(f"group {name!r} holds every class: nothing is left to tell it from")
            continue
        groups.append(LabelGroup(str(name), tuple(ids)))
    if problems:
        raise ValueError(
            f"--label_groups={path!r}: " + "; ".join(problems) + f". The model's classes: {list(class_names)}"
        )
    return groups


def resolve_label_groups(spec: str | None, class_names: Sequence[str]) -> list[LabelGroup]:
    """The label groups ``spec`` (``--label_groups``) names for a model with ``class_names``."""
    spec = spec or "auto"
    if spec == "none":
        return []
    if spec in ("auto", "isic"):
        return _isic(class_names, required=spec == "isic")
    return _from_file(spec, class_names)


def group_scores(probs: np.ndarray, group: LabelGroup) -> np.ndarray:
    """P(group) per image: the sum of its classes' probabilities."""
    return probs[:, list(group.classes)].sum(1)
