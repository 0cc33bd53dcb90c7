"""Clinical evaluation: label groups (malignant vs benign), operating points frozen on validation,
confidence intervals that resample whole lesions, subgroups, selective prediction and shift.

Pure functions of labels, probabilities and metadata (numpy, vectorised); ``skinacc evaluate`` and a
training run's final test call :func:`clinical_evaluation` on predictions gathered once over processes.
"""

from skinacc.clinical.bootstrap import Interval, bootstrap, group_ids, paired_bootstrap
from skinacc.clinical.decision import (
    DISCLAIMER,
    Abstention,
    DecisionRules,
    OperatingPoint,
    choose_abstention,
    choose_operating_point,
    parse_operating_point,
)
from skinacc.clinical.groups import ISIC_GROUPS, LabelGroup, group_scores, resolve_label_groups
from skinacc.clinical.report import ClinicalInputs, clinical_evaluation, clinical_summary, write_clinical
from skinacc.clinical.selective import (
    ABSTAIN_SCORES,
    coverage_threshold,
    risk_coverage,
    uncertainty,
    view_disagreement,
)

__all__ = [
    "ABSTAIN_SCORES",
    "DISCLAIMER",
    "ISIC_GROUPS",
    "Abstention",
    "ClinicalInputs",
    "DecisionRules",
    "Interval",
    "LabelGroup",
    "OperatingPoint",
    "bootstrap",
    "choose_abstention",
    "choose_operating_point",
    "clinical_evaluation",
    "clinical_summary",
    "coverage_threshold",
    "group_ids",
    "group_scores",
    "paired_bootstrap",
    "parse_operating_point",
    "resolve_label_groups",
    "risk_coverage",
    "uncertainty",
    "view_disagreement",
    "write_clinical",
]
