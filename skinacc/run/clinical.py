"""Decision rules for a run's model (training, ``skinacc evaluate --operating_point``): the clinical
options checked before training, thresholds chosen on validation predictions and stored with the model.
The clinical evaluation of predictions is part of the one report, :func:`skinacc.evaluation.report`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skinacc.artifact import set_inference
from skinacc.clinical import (
    DecisionRules,
    choose_abstention,
    choose_operating_point,
    resolve_label_groups,
    uncertainty,
)
from skinacc.config.clinical import ClinicalArguments
from skinacc.data.columns import sample_columns

__all__ = [
    "DECISION_KEY",
    "check_clinical",
    "choose_rules",
    "store_rules",
    "wants_rules",
]

#: Where a model folder's ``config.json`` keeps the decision rules (under ``skinacc``).
DECISION_KEY = "decision"


def check_clinical(
    clinical: ClinicalArguments, class_names: list[str], plan, metadata_file: str | None
) -> None:
    """Fail at the start of a run, not after its training, on clinical options its data cannot serve:
    an unreadable ``--label_groups`` file, an operating point of an unknown group, a subgroup column the
    test split's metadata lack (checked on map-style data; a stream is read once, at the end)."""
    from skinacc.clinical.decision import parse_operating_point
    from skinacc.clinical.subgroups import parse_subgroup_spec

    groups = {g.name for g in resolve_label_groups(clinical.label_groups, class_names)}
    for spec in clinical.operating_point:
        name = parse_operating_point(spec)[0]
        if name not in groups:
            raise ValueError(
                f"--operating_point={spec!r}: no label group {name!r}; groups: {sorted(groups) or 'none'} "
                f"(--label_groups={clinical.label_groups!r}, classes {class_names})"
            )
    wanted = [parse_subgroup_spec(s).column for s in clinical.subgroup_columns]
    test = plan.data.dataset.get("test")
    if wanted and test is not None and not plan.streaming and len(test):
        try:
            sample_columns(
                test, test["sample_id"][:1], wanted, metadata_file=metadata_file, root=plan.data.report.root
            )
        except ValueError as e:
            raise ValueError(f"--subgroup_columns: {e}") from None


def wants_rules(clinical: ClinicalArguments) -> bool:
    """Does the run choose thresholds on validation?"""
    return bool(clinical.operating_point) or clinical.abstain_coverage is not None


def choose_rules(
    clinical: ClinicalArguments,
    class_names: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    disagreement: np.ndarray | None,
    chosen_on: str = "validation",
) -> DecisionRules:
    """The operating points and abstention threshold ``clinical`` asks for, chosen on these predictions."""
    groups = resolve_label_groups(clinical.label_groups, class_names)
    points = [
        choose_operating_point(s, groups, labels, probs, class_names, chosen_on)
        for s in clinical.operating_point
    ]
    abstention = None
    if clinical.abstain_coverage is not None:
        unc = uncertainty(probs, clinical.abstain_score, disagreement)
        abstention = choose_abstention(unc, clinical.abstain_score, clinical.abstain_coverage, chosen_on)
    return DecisionRules(points, abstention)


def store_rules(model_dir: str | Path, rules: DecisionRules) -> None:
    """Keep ``rules`` in the model folder's ``config.json`` (predict, the web demo and evaluate apply them)."""
    set_inference(model_dir, **{DECISION_KEY: rules.to_dict()})
