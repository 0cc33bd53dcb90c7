"""What a clinical evaluation asks of a model: :class:`ClinicalArguments` (training's final test and
``skinacc evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skinacc.config.fields import option

__all__ = ["ClinicalArguments"]


@dataclass
class ClinicalArguments:
    """Label groups, operating points, confidence intervals, subgroups and abstention (skinacc.clinical).

    Every option only shapes what is reported at the end and what decision rules are stored with the
    model, never the training itself: all may change on resume and none makes two runs different set-ups.
    """

    label_groups: str = option(
        "Groups of classes asked about as one (P(group) = the sum of its classes' probabilities): 'auto' "
        "(the ISIC malignant group, melanoma + basal cell carcinoma + squamous cell carcinoma + actinic "
        "keratosis, when the model knows any of them), 'isic' (the same, required), 'none', or a YAML/JSON "
        "file of group name -> class names.",
        default="auto",
        resume=True,
        setup=False,
    )
    operating_point: list[str] = option(
        "Thresholds chosen on validation, frozen, stored with the model and applied to test, predict and "
        "the web demo ('refer'): <group>:sensitivity=<t> or <group>:specificity=<t>, e.g. "
        "malignant:sensitivity=0.95. Needs a validation split.",
        default_factory=list,
        resume=True,
        setup=False,
    )
    abstain_coverage: float | None = option(
        "Choose on validation the uncertainty threshold that keeps this share of images, store it with "
        "the model and abstain above it ('uncertain: refer') in test, predict and the web demo. Default: no "
        "abstention rule (risk-coverage figures are reported anyway).",
        default=None,
        resume=True,
        setup=False,
    )
    abstain_score: Literal["max_prob", "entropy", "tta_disagreement"] = option(
        "Uncertainty behind abstention and the risk-coverage curve: 1 - top probability, normalised "
        "entropy, or the share of TTA views that disagree with the averaged prediction.",
        default="max_prob",
        resume=True,
        setup=False,
    )
    report_coverage: float = option(
        "Accuracy is also reported on the most certain images making up this share.",
        default=0.9,
        resume=True,
        setup=False,
    )
    bootstrap: int = option(
        "Bootstrap resamples of the confidence intervals; whole groups (--group_column: lesion or "
        "patient) are resampled, images when there are none. 0: point estimates only.",
        default=2000,
        resume=True,
        setup=False,
    )
    ci_level: float = option("Coverage of the confidence intervals.", default=0.95, resume=True, setup=False)
    bootstrap_seed: int = option(
        "Seed of the resamples (the same seed pairs two models' intervals).",
        default=0,
        resume=True,
        setup=False,
    )
    subgroup_columns: list[str] = option(
        "Metadata columns to report subgroups of (the metadata CSV's or the dataset's): e.g. sex "
        "anatom_site age:40,60 (a numeric column is cut at the given edges, else at its tertiles).",
        default_factory=list,
        resume=True,
        setup=False,
    )
    min_subgroup_size: int = option(
        "Subgroups with fewer images are reported with a warning.", default=30, resume=True, setup=False
    )
    pauc_min_tpr: float = option(
        "Sensitivity above which the partial AUC is measured (ISIC 2024: 0.8).",
        default=0.8,
        resume=True,
        setup=False,
    )

    def validate(self) -> list[str]:
        from skinacc.clinical.decision import parse_operating_point
        from skinacc.clinical.subgroups import parse_subgroup_spec

        p = []
        for spec in self.operating_point:
            try:
                parse_operating_point(spec)
            except ValueError as e:
                p.append(str(e))
        for spec in self.subgroup_columns:
            try:
                parse_subgroup_spec(spec)
            except ValueError as e:
                p.append(str(e))
        for name in ("abstain_coverage", "report_coverage", "pauc_min_tpr"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 1:
                p.append(f"--{name}={v}: must be in (0, 1]")
        if not 0 < self.ci_level < 1:
            p.append(f"--ci_level={self.ci_level}: must be in (0, 1), e.g. 0.95")
        if self.bootstrap < 0:
            p.append(f"--bootstrap={self.bootstrap}: must be >= 0 (0: no intervals)")
        if self.min_subgroup_size < 1:
            p.append(f"--min_subgroup_size={self.min_subgroup_size}: must be >= 1")
        if self.label_groups in ("", None):
            p.append("--label_groups: expected auto, isic, none or a YAML/JSON file")
        return p
