"""``skinacc audit``: the data audit of a dataset as training would split it, written to files (and W&B).

Duplicates (:mod:`skinacc.audit.duplicates`), suspect labels (:mod:`skinacc.audit.labels`) and image
quality (:mod:`skinacc.audit.quality`) on the exact splits a run with the same data options would use.
"""

from __future__ import annotations

from pathlib import Path

from skinacc.audit.core import audit_dataset
from skinacc.audit.outputs import summary_text, write_audit
from skinacc.config import DataArguments, LoggingArguments
from skinacc.config.tools import AuditArguments
from skinacc.data import default_num_workers, load_skin_dataset
from skinacc.tracking import prepare_wandb

__all__ = ["run_audit"]


def run_audit(args: AuditArguments, data_args: DataArguments, log_args: LoggingArguments) -> dict:
    """Audit the splits ``data_args`` make (duplicates, suspect labels, image quality), write the files,
    print the summary, and log to W&B with ``--report_to wandb``; the report."""
    workers = args.workers or default_num_workers(None) + 1
    data = load_skin_dataset(data_args)
    report, tables = audit_dataset(
        data,
        duplicates=args.duplicates,
        radius=args.radius,
        threshold=args.threshold,
        max_hue_degrees=args.max_hue_degrees,
        label_issues=args.label_issues,
        predictions=args.predictions,
        embedding_model=args.embedding_model,
        embedding_weights=args.embedding_weights,
        embedding_size=args.embedding_size,
        folds=args.folds,
        quality=args.quality,
        workers=workers,
        cache_dir=data_args.cache_dir,
    )
    out = Path(args.output_dir)
    files = write_audit(report, tables, out, args.max_grid)
    print(summary_text(report))
    print(f"wrote {', '.join(str(f) for f in files)}")
    if log_args.report_to == "wandb":
        _log_wandb(log_args, report, tables, out, files)
    return report


def _log_wandb(log_args, report: dict, tables: dict, out: Path, files: list[Path]) -> None:
    """The audit as a W&B run: summary numbers, a table of duplicate groups and one of suspect labels."""
    import wandb

    rows, names = tables["rows"], tables["class_names"]
    run = wandb.init(
        project=log_args.project, job_type="audit", name=log_args.run_name, dir=str(out),
        mode=prepare_wandb("wandb"),
    )  # fmt: skip
    dup = wandb.Table(
        columns=["group", "kind", "crosses_splits", "conflicting_labels", "split", "label", "path"]
    )
    for g in tables["duplicates"]:
        for m in g["members"]:
            dup.add_data(g["group"], g["kind"], g["crosses_splits"], g["conflicting_labels"], rows["split"][m],
                         names[rows["label"][m]], rows["path"][m])  # fmt: skip
    issues = wandb.Table(columns=["rank", "split", "path", "given", "suggested", "label_quality"])
    for i in tables["label_issues"]:
        issues.add_data(
            i["rank"], i["split"], i["path"], i["given_label"], i["suggested_label"], i["label_quality"]
        )
    run.log(
        {"audit/duplicates": dup, "audit/label_issues": issues}
        | {f"audit/{p.stem}": wandb.Image(str(p)) for p in files if p.suffix == ".png"}
    )
    d = report.get("duplicates", {})
    run.summary.update(
        {
            "audit/images": report["num_images"],
            "audit/duplicate_groups": d.get("groups", 0),
            "audit/leaking_groups": d.get("leakage", {}).get("groups_crossing_splits", 0),
            "audit/conflicting_groups": d.get("label_conflicts", {}).get("groups", 0),
            "audit/suspect_labels": report.get("label_issues", {}).get("suspects", 0),
        }
    )
    run.finish()
