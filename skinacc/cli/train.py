"""Train a skin-disease classifier with Accelerate: DDP, mixed precision and dynamo from YAML.

Launch settings (processes, precision, compile) come only from ``accelerate_configs/*.yaml``;
hyper-parameters from the recipe config and flags (defaults < --config YAML < flags).

    accelerate launch -q --config_file accelerate_configs/cpu.yaml --num_cpu_threads_per_process 2 \\
        recipes/train.py --config recipes/configs/demo.yaml
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml -m skinacc train \\
        --config recipes/configs/seed_b3.yaml --data_dir /data/massive-skin-disease
    accelerate launch ... -m skinacc train ... --resume_from_checkpoint latest     # after a stop or crash
    # 5-fold grouped cross-validation: <output_dir>/fold_<k> runs, out-of-fold predictions, cv_report.json
    accelerate launch ... -m skinacc train --config recipes/configs/dermoscopy.yaml --cv_folds 5 --test_size 0

Stop with SIGTERM or Ctrl+C: a checkpoint is saved at the next safe point and the run exits 143.
"""

from __future__ import annotations

from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config import CONFIG_TYPES
from skinacc.run import TrainingRun
from skinacc.run.cv import run_cross_validation


def main(argv: list[str] | None = None) -> dict[str, Any]:
    data_args, model_args, args, log_args, clinical = parse_args(CONFIG_TYPES, argv, description=__doc__)
    if data_args.cv_folds and data_args.cv_fold is None:  # every fold, then the cross-validation report
        return run_cross_validation(data_args, model_args, args, log_args, clinical)
    with TrainingRun(data_args, model_args, args, log_args, clinical_args=clinical) as run:
        return run.run()
