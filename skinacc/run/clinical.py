"""The clinical evaluation of a run's predictions (training's final test, ``skinacc evaluate``): decision
rules chosen on validation and stored with the model, then the report on the evaluated split, its
files, figures, console table and tracker entries. Called on the main process with predictions
gathered once over processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skinacc.artifact import set_inference
from skinacc.clinical import (
    ClinicalInputs,
    DecisionRules,
    choose_abstention,
    choose_operating_point,
    clinical_evaluation,
    clinical_summary,
    resolve_label_groups,
    uncertainty,
    write_clinical,
)
from skinacc.config.clinical import ClinicalArguments
from skinacc.data.columns import sample_columns

__all__ = [
    "DECISION_KEY",
    "check_clinical",
    "choose_rules",
    "clinical_scalars",
    "report_clinical",
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


def report_clinical(
    out: Path,
    clinical: ClinicalArguments,
    *,
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    rules: DecisionRules,
    table,
    sample_ids: np.ndarray,
    streaming: bool,
    group_column: str | None,
    metadata_file: str | None,
    root: str | None,
    disagreement: np.ndarray | None = None,
    accelerator=None,
    tag: str = "test",
    step: int | None = None,
) -> dict[str, Any]:
    """Write ``clinical.json`` (+ ``subgroups.csv``) and the figures into ``out``, print the summary and
    log scalars and tables to the tracker.

    Args:
        table, sample_ids, streaming: The evaluated split and the predictions' ids in it (the ``group``
            and metadata columns are read from there, :func:`skinacc.data.columns.sample_columns`).
        group_column: The data's ``--group_column`` (the bootstrap resamples its groups), or None.
        metadata_file, root: An image folder's metadata CSV and folder, for the subgroup columns.
    """
    from skinacc.clinical.subgroups import parse_subgroup_spec
    from skinacc.plots.clinical import plot_clinical

    groups = resolve_label_groups(clinical.label_groups, class_names)
    wanted = [parse_subgroup_spec(s).column for s in clinical.subgroup_columns]
    has_group = "group" in (table.column_names or [])
    try:
        meta = sample_columns(
            table,
            sample_ids,
            (["group"] if has_group else []) + wanted,
            streaming=streaming,
            metadata_file=metadata_file,
            root=root,
        )
    except ValueError as e:
        raise ValueError(f"--subgroup_columns: {e}") from None
    score = rules.abstention.score if rules.abstention else clinical.abstain_score
    x = ClinicalInputs(
        labels,
        probs,
        class_names,
        meta.get("group") if has_group else None,
        (group_column or "duplicate group") if has_group else None,
        groups,
        rules,
        meta,
        disagreement,
    )
    report = clinical_evaluation(
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
    report["decision_rules"] = rules.describe()
    write_clinical(out, report)
    figures = plot_clinical(out, report, labels, probs, groups, uncertainty(probs, score, disagreement))
    print(clinical_summary(report))
    if accelerator is not None:
        accelerator.log({f"{tag}/{k}": v for k, v in clinical_scalars(report).items()}, step=step)
        from skinacc.tracking import log_clinical, log_images, wandb_run

        wb = wandb_run(accelerator)
        log_clinical(wb, report, tag)
        log_images(wb, {f"plots/{p.stem}": p for p in figures})
    return report


def clinical_scalars(report: dict[str, Any]) -> dict[str, float]:
    """The report's single numbers with their CI ends, flat (``malignant/auc``, ``..._ci_low`` ...) for
    trackers and ``summary.json``."""
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
