"""The one report of a :class:`~skinacc.evaluation.predictions.Predictions` record.

Training's final test, ``skinacc evaluate``, a cross-validation fold's held-out predictions and the
out-of-fold set all call :func:`report`: it writes ``metrics.json``, ``per_class.csv`` and
``predictions.csv``, draws the figures, runs the clinical evaluation (``clinical.json``, its figures),
prints the tables and sends all of it to the tracker. A new figure or metric is added here once, and
every evaluation has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinacc.clinical import (
    ClinicalInputs,
    DecisionRules,
    clinical_evaluation,
    clinical_summary,
    resolve_label_groups,
    uncertainty,
    write_clinical,
)
from skinacc.config.clinical import ClinicalArguments
from skinacc.evaluation.predictions import Predictions
from skinacc.metrics.report import HEADLINE, format_metrics_table, scalar_metrics, write_evaluation

__all__ = ["HEADLINE", "Report", "clinical_scalars", "report"]


@dataclass
class Report:
    """What :func:`report` wrote.

    Attributes:
        metrics: ``metrics.json``'s metrics (the ``extra`` entries aside).
        clinical: ``clinical.json``'s content, or None when no clinical evaluation was asked.
        figures: The figures drawn.
    """

    metrics: dict[str, Any]
    clinical: dict[str, Any] | None = None
    figures: list[Path] = field(default_factory=list)

    def scalars(self) -> dict[str, float]:
        """The single numbers, the clinical ones with their CI ends (for trackers and summaries)."""
        return scalar_metrics(self.metrics | (clinical_scalars(self.clinical) if self.clinical else {}))


def report(
    pred: Predictions,
    out: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    title: str | None = None,
    clinical: ClinicalArguments | None = None,
    rules: DecisionRules | None = None,
    plots: bool = True,
    accelerator=None,
    tag: str = "test",
    step: int | None = None,
) -> Report:
    """Write, print and log the evaluation of ``pred`` into ``out`` (call on the main process).

    Args:
        pred: The predictions.
        out: The evaluation folder.
        extra: Entries added to ``metrics.json`` (model, split, TTA, temperature ...).
        title: Print the metrics table (and the clinical summary) under this title; None: print nothing.
        clinical: Run the clinical evaluation with these options (None: none).
        rules: Decision rules frozen on validation, applied and described in ``clinical.json``.
        plots: Draw the figures.
        accelerator: Log the scalars, tables and figures to its trackers (None: no logging).
        tag: The trackers' prefix (``test/balanced_accuracy``; the split or folder evaluated).
        step: The tracker step of the scalars.

    Returns:
        The :class:`Report`.
    """
    out = Path(out)
    metrics = write_evaluation(out, pred.labels, pred.probs, pred.class_names, pred.paths, extra)
    result = Report(metrics)
    if plots:
        from skinacc.plots import plot_evaluation

        result.figures += plot_evaluation(out, pred.labels, pred.probs, pred.class_names, metrics)
    if title is not None:
        print(format_metrics_table(metrics, title))
        absent = [c for c, r in metrics["per_class"].items() if r["support"] == 0]
        if absent:
            print(
                "classes of the model absent from the data (recall undefined, left out of balanced "
                f"accuracy): {absent}"
            )
    if clinical is not None:
        result.clinical = _clinical(pred, clinical, rules)
        write_clinical(out, result.clinical)
        if plots:
            from skinacc.plots.clinical import plot_clinical

            score = result.clinical["selective"]["score"]
            unc = uncertainty(pred.probs, score, pred.disagreement)
            groups = resolve_label_groups(clinical.label_groups, pred.class_names)
            result.figures += plot_clinical(out, result.clinical, pred.labels, pred.probs, groups, unc)
        if title is not None:
            print(clinical_summary(result.clinical))
    if accelerator is not None:
        _log(accelerator, result, tag, step)
    return result


def _clinical(pred: Predictions, clinical: ClinicalArguments, rules: DecisionRules | None) -> dict[str, Any]:
    """``clinical.json``'s content: :func:`skinacc.clinical.clinical_evaluation` of ``pred``."""
    score = rules.abstention.score if rules is not None and rules.abstention else clinical.abstain_score
    x = ClinicalInputs(
        pred.labels,
        pred.probs,
        pred.class_names,
        pred.groups,
        pred.group_by if pred.groups is not None else None,
        resolve_label_groups(clinical.label_groups, pred.class_names),
        rules or DecisionRules(),
        dict(pred.metadata),
        pred.disagreement,
    )
    result = clinical_evaluation(
        x,
        n_boot=clinical.bootstrap,
        level=clinical.ci_level,
        seed=clinical.bootstrap_seed,
        pauc_min_tpr=clinical.pauc_min_tpr,
        abstain_score=score,
        report_coverage=clinical.report_coverage,
        subgroup_columns=clinical.subgroup_columns,
        min_subgroup_size=clinical.min_subgroup_size,
    )
    if rules is not None:
        result["decision_rules"] = rules.describe()
    return result


def _log(accelerator, result: Report, tag: str, step: int | None) -> None:
    """Scalars as ``<tag>/<name>``; to W&B also the per-class and clinical tables and the figures."""
    from skinacc.tracking import log_clinical, log_evaluation, log_images, wandb_run

    accelerator.log({f"{tag}/{k}": v for k, v in result.scalars().items()}, step=step)
    wb = wandb_run(accelerator)
    log_evaluation(wb, result.metrics, tag)
    if result.clinical is not None:
        log_clinical(wb, result.clinical, tag)
    log_images(wb, {f"plots/{p.stem}": p for p in result.figures})


def clinical_scalars(report: dict[str, Any]) -> dict[str, float]:
    """The clinical report's single numbers with their CI ends, flat (``clinical/malignant/auc``,
    ``..._ci_low`` ...) for trackers and ``summary.json``."""
    out: dict[str, float] = {}

    def put(prefix: str, v: dict) -> None:
        out[prefix] = v["value"]
        out[f"{prefix}_ci_low"], out[f"{prefix}_ci_high"] = v["ci_low"], v["ci_high"]

    for k, v in report["headline"].items():
        put(f"clinical/{k}", v)
    for name, g in report["label_groups"].items():
        for k, v in g.items():
            if isinstance(v, dict):
                put(f"clinical/{name}/{k}", v)
    for op in report["operating_points"]:
        for k in ("sensitivity", "specificity", "ppv", "npv", "referred"):
            put(f"clinical/op/{op['rule']}/{k}", op[k])
    sel = report["selective"]
    out["clinical/aurc"] = sel["aurc"]
    put(f"clinical/accuracy_at_coverage_{sel['at_coverage']['target']:g}", sel["at_coverage"]["accuracy"])
    if "abstention" in sel:
        put("clinical/abstention/coverage", sel["abstention"]["coverage"])
        put("clinical/abstention/accuracy_kept", sel["abstention"]["accuracy_kept"])
    return out
