"""Audit a dataset before trusting a model's accuracy on it: copies across splits, copies with two
labels, suspect labels, image-quality flags. Takes the same data options as training, so it sees the
exact splits a run would use.

    # The embedded default, a folder, a Hub/save_to_disk dataset
    skinacc audit --output_dir outputs/audit_demo
    skinacc audit --data_dir ../shared/data/isic8-dermoscopy --group_column lesion_group --output_dir outputs/audit_isic8
    skinacc audit --dataset_name my-org/skin-set --output_dir outputs/audit_hub --workers 16

    # Suspect labels from a trained run's predictions instead of a k-fold linear probe
    skinacc audit --data_dir ... --predictions outputs/run/eval_test/predictions.csv

    # Log the tables to W&B
    skinacc audit --data_dir ... --report_to wandb

Writes audit.json, duplicates.csv, label_issues.csv, quality.csv, duplicates.png and label_issues.png
to --output_dir and prints a one-screen summary. Needs ``pip install 'skinacc[audit]'`` (faiss-cpu,
cleanlab, cleanvision). ``train.py --dedupe_groups`` then keeps every copy of an image in one split.
"""

from __future__ import annotations

import logging

from skinacc.audit.command import run_audit
from skinacc.cli.common import parse_args
from skinacc.config import DataArguments, LoggingArguments
from skinacc.config.tools import AuditArguments


def main(argv: list[str] | None = None) -> dict:
    args, data_args, log_args = parse_args(
        (AuditArguments, DataArguments, LoggingArguments),
        argv,
        description=__doc__,
        defaults={"report_to": "none"},
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_audit(args, data_args, log_args)
