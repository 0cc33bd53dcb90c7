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

This script is ``skinacc audit`` (``python -m skinacc audit``, or ``accelerate launch ... -m skinacc
audit``): it runs :mod:`skinacc.cli.audit`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("audit")
