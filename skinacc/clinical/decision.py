"""Decision rules stored with a model: operating points ("refer") and abstention ("uncertain: refer").

A threshold is chosen on validation for a target (``--operating_point malignant:sensitivity=0.95``;
``--abstain_coverage 0.9``), frozen, stored in the model folder's ``config.json`` (under ``skinacc`` →
``decision``) and applied unchanged to the test split, by ``skinacc predict`` and by the web demo. The
test split then shows how far the frozen threshold's sensitivity lands from its target.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from skinacc.clinical.groups import LabelGroup
from skinacc.clinical.selective import coverage_threshold, uncertainty
from skinacc.clinical.weighted import rates_at, roc

__all__ = [
    "DISCLAIMER",
    "Abstention",
    "DecisionRules",
    "OperatingPoint",
    "choose_abstention",
    "choose_operating_point",
    "parse_operating_point",
]

#: Shown beside every decision, in predict's output and on the web demo.
DISCLAIMER = (
    "Research software, not a medical device: decisions are the model's threshold on its own "
    "probabilities, not a diagnosis."
)

REFER, NO_REFERRAL, UNCERTAIN = "refer", "no referral suggested", "uncertain: refer"

_SPEC = re.compile(r"^\s*([^:=]+?)\s*:\s*(sensitivity|specificity)\s*=\s*([0-9.]+)\s*$")


def parse_operating_point(spec: str) -> tuple[str, str, float]:
    """``"malignant:sensitivity=0.95"`` -> ``("malignant", "sensitivity", 0.95)``.

    Raises:
        ValueError: Naming the flag, the value and the form expected.
    """
    m = _SPEC.match(spec)
    if not m or not 0 < float(m.group(3)) <= 1:
        raise ValueError(
            f"--operating_point={spec!r}: expected <group>:sensitivity=<0-1> or <group>:specificity=<0-1>, "
            "e.g. malignant:sensitivity=0.95"
        )
    return m.group(1), m.group(2), float(m.group(3))


@dataclass
class OperatingPoint:
    """A frozen threshold on P(group): ``P(group) >= threshold`` means "refer"."""

    group: str
    classes: list[str]
    target: str  # "sensitivity" or "specificity"
    target_value: float
    threshold: float
    chosen_on: str = "validation"
    chosen: dict[str, float] = field(default_factory=dict)  # the rates where it was chosen

    @property
    def label(self) -> str:
        return f"{self.group}:{self.target}={self.target_value:g}"


@dataclass
class Abstention:
    """Abstain ("uncertain: refer") where the uncertainty score exceeds ``threshold``."""

    score: str
    threshold: float
    target_coverage: float
    chosen_on: str = "validation"


@dataclass
class DecisionRules:
    """What a model decides beyond its probabilities; empty for a model trained without rules."""

    operating_points: list[OperatingPoint] = field(default_factory=list)
    abstention: Abstention | None = None

    def __bool__(self) -> bool:
        return bool(self.operating_points) or self.abstention is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "operating_points": [asdict(p) for p in self.operating_points],
            "abstention": asdict(self.abstention) if self.abstention else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DecisionRules:
        d = d or {}
        ab = d.get("abstention")
        return cls(
            [OperatingPoint(**p) for p in d.get("operating_points") or []], Abstention(**ab) if ab else None
        )

    def decide(
        self, probs: np.ndarray, class_names: list[str], disagreement: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """Per image: each operating point's P(group) and decision, and whether the model abstains.

        Args:
            probs: ``(n, C)`` probabilities in ``class_names`` order.
            disagreement: Per image, the share of TTA views that disagree (``tta_disagreement`` abstention).
        """
        n = len(probs)
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for p in self.operating_points:
            cols = [class_names.index(c) for c in p.classes]
            score = probs[:, cols].sum(1)
            for i in range(n):
                out[i][p.group] = {
                    "probability": float(score[i]),
                    "decision": REFER if score[i] >= p.threshold else NO_REFERRAL,
                    "rule": f"{p.label} (threshold {p.threshold:.4f}, chosen on {p.chosen_on})",
                }
        if self.abstention is not None:
            unc = uncertainty(probs, self.abstention.score, disagreement)
            for i in range(n):
                out[i]["uncertain"] = bool(unc[i] > self.abstention.threshold)
        return out

    def describe(self) -> list[str]:
        """One line per rule (model card, console)."""
        lines = []
        for p in self.operating_points:
            got = ", ".join(f"{k} {v:.3f}" for k, v in p.chosen.items() if isinstance(v, float))
            lines.append(
                f"{p.group} ({', '.join(p.classes)}): refer when P >= {p.threshold:.4f}, chosen on "
                f"{p.chosen_on} for {p.target} {p.target_value:g}" + (f" ({got})" if got else "")
            )
        if self.abstention is not None:
            a = self.abstention
            lines.append(
                f"abstain ('uncertain: refer') when {a.score} uncertainty > {a.threshold:.4f}, chosen on "
                f"{a.chosen_on} to keep {a.target_coverage:.0%} of images"
            )
        return lines


def choose_operating_point(
    spec: str,
    groups: list[LabelGroup],
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    chosen_on: str = "validation",
) -> OperatingPoint:
    """The threshold on ``labels``/``probs`` (validation) that meets ``spec``'s target with the best
    other rate: the highest specificity at sensitivity >= target, or the reverse."""
    name, target, value = parse_operating_point(spec)
    group = next((g for g in groups if g.name == name), None)
    if group is None:
        raise ValueError(
            f"--operating_point={spec!r}: no label group {name!r}; groups: {[g.name for g in groups] or 'none'} "
            "(see --label_groups)"
        )
    y = np.isin(labels, group.classes)
    if y.all() or not y.any():
        raise ValueError(
            f"--operating_point={spec!r}: the {chosen_on} split has {'no' if not y.any() else 'only'} "
            f"{name} images; a threshold needs both"
        )
    score = probs[:, list(group.classes)].sum(1)
    curve = roc(np.ones((1, len(y))), y, score)
    other, thr = rates_at(curve, value, target)
    t = float(thr[0])
    # Midway to the next lower score: the same images are referred, and an image exactly at the
    # threshold does not flip when its probability is stored or recomputed with float rounding.
    lower = score[score < t]
    if np.isfinite(t):
        t = float((t + lower.max()) / 2) if len(lower) else t - 1e-6
    refer = score >= t
    chosen = {
        "sensitivity": float(refer[y].mean()),
        "specificity": float((~refer[~y]).mean()),
        "images": int(len(y)),
        "positives": int(y.sum()),
    }
    return OperatingPoint(name, group.members(class_names), target, value, t, chosen_on, chosen)


def choose_abstention(
    unc: np.ndarray, score: str, coverage: float, chosen_on: str = "validation"
) -> Abstention:
    """The uncertainty threshold that keeps ``coverage`` of the ``chosen_on`` images."""
    return Abstention(score, coverage_threshold(unc, coverage), coverage, chosen_on)
