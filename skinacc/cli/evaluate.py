"""Evaluate a trained classifier on a split or on any labelled image folder: metrics, per-class table,
predictions and plots.

    # A skinacc run directory (its best/ model, and the data options it was trained with)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --split test
    # ... logged to W&B (metrics, per-class table, confusion matrix, plots)
    accelerate launch --config_file accelerate_configs/cpu.yaml -m skinacc evaluate --model outputs/demo --report_to wandb
    # Any checkpoint on an external labelled folder (<root>/<Class>/*.jpg): every image is test data,
    # classes are matched by name, the folder may lack some of the model's classes
    accelerate launch ... recipes/evaluate.py --model outputs/dermoscopy --data_dir /data/other-clinic
    # ... with Grad-CAM grids: per class, the 8 most confident errors and 8 correct cases (W&B images too)
    accelerate launch ... recipes/evaluate.py --model outputs/demo --explain 8
    # A timm folder or Hub model with dihedral test-time augmentation, 4 GPUs
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \\
        --model hf-hub:org/skinacc-b3 --data_dir /data/massive-skin-disease --split test --tta dihedral
    # Pre-resized shards (skinacc prepare-shards), streamed: each rank reads its own shards
    accelerate launch ... recipes/evaluate.py --model outputs/b3 --dataset_name /shared/msd-shards --streaming --split test
    # At a larger size than the model was trained at (the crop ratio is kept unless --resize_size is given)
    accelerate launch ... recipes/evaluate.py --model outputs/dermoscopy --image_size 192
    # Clinical evaluation: malignant vs benign at a sensitivity chosen on validation, CIs by lesion,
    # subgroups, abstention, another clinic's images as a shift, a stress test
    accelerate launch ... recipes/evaluate.py --model outputs/dermoscopy --operating_point malignant:sensitivity=0.95 \\
        --abstain_coverage 0.9 --subgroup_columns sex age:40,60 anatom_site --ood_dir /data/other-clinic --stress
    # A long evaluation that stopped: continue it (results so far are in <output_dir>/predictions.partial)
    accelerate launch ... recipes/evaluate.py --model outputs/b3 --data_dir /data/archive --resume

With a run directory and no data source, the run's own data options rebuild its split (default: test).
With --data_dir or --dataset_name (in any spelling, flag or YAML) the source is external and, unless
--split says otherwise, all of its images are evaluated. Test-time augmentation and temperature default
to the model's own, and so do the input sizes unless --image_size/--resize_size are given.

Writes to --output_dir (default <run>/eval_<split>, or <run>/eval_<folder name> for an external folder):
metrics.json, per_class.csv, predictions.csv (path, true, predicted, probabilities),
confusion_matrix[_normalized].png, roc_curves.png, per_class.png, reliability.png; clinical.json (label
groups, operating points, abstention, subgroups, shift, each with lesion-resampled CIs), subgroups.csv,
roc_<group>.png, risk_coverage.png, subgroups_forest.png; with --explain N explain/<class>.png; prints
summary tables.
"""

from __future__ import annotations

from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config import ClinicalArguments, DataArguments, LoggingArguments
from skinacc.config.inference import EvalArguments
from skinacc.run.evaluation import evaluate_model, model_run_config, run_data_options


def main(argv: list[str] | None = None) -> dict[str, Any]:
    given: dict[str, bool] = {}

    def defaults(first: tuple) -> dict[str, Any]:
        # A source the user names (any spelling, flag or YAML) takes none of the run's data options
        # (groups, metadata, caps, ...); without one, the run's own data options rebuild its split.
        # The run's clinical options (label groups, bootstrap, subgroups) are defaults too, bar subgroup
        # columns for an outside source, whose metadata differ.
        args, data_args, _, _ = first
        given["external"] = bool(data_args.data_dir or data_args.dataset_name)
        clinical = dict(model_run_config(args.model).get("clinical", {}))
        clinical = {k: v for k, v in clinical.items() if k not in ("operating_point", "abstain_coverage")}
        if given["external"]:
            clinical.pop("subgroup_columns", None)
        return {
            "report_to": "none",
            **clinical,
            **({} if given["external"] else run_data_options(args.model)),
        }

    args, data_args, log_args, clinical = parse_args(
        (EvalArguments, DataArguments, LoggingArguments, ClinicalArguments),
        argv,
        description=__doc__,
        defaults=defaults,
        defaults_source="the trained run's run_config.yaml",
    )
    return evaluate_model(args, data_args, log_args, clinical, external=given["external"])
