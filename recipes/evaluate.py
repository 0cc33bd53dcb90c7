"""Evaluate a trained classifier on a split or on any labelled image folder: metrics, per-class table,
predictions and plots.

    # A skinacc run directory (its best/ model, and the data options it was trained with)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --split test

    # ... and log it to W&B (metrics, per-class table, confusion matrix, plots)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --report_to wandb

    # Any checkpoint on an external labelled folder (<root>/<Class>/*.jpg): every image is test data,
    # classes are matched by name, the folder may lack some of the model's classes
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py \
        --model outputs/dermoscopy --data_dir /data/other-clinic

    # ... with Grad-CAM grids: per class, the 8 most confident errors and 8 correct cases (W&B images too)
    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/evaluate.py --model outputs/demo --explain 8

    # A timm folder or Hub model with dihedral test-time augmentation, 4 GPUs
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \
        --model hf-hub:org/skinacc-b3 --data_dir /data/massive-skin-disease --split test --tta dihedral

    # Pre-resized shards (recipes/prepare_shards.py), streamed: each rank reads its own shards
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml recipes/evaluate.py \
        --model outputs/b3 --dataset_name /shared/msd-shards --streaming --split test

    # At a larger size than the model was trained at (a CNN trained on random-resized crops often
    # scores better a little above it; the crop ratio is kept unless --resize_size is given too)
    accelerate launch ... recipes/evaluate.py --model outputs/dermoscopy --image_size 192

    # A long evaluation that stopped: continue it (results so far are in <output_dir>/predictions.partial)
    accelerate launch ... recipes/evaluate.py --model outputs/b3 --data_dir /data/archive --resume

With a run directory and no data flag, the run's own data options rebuild its split (default: test).
With --data_dir or --dataset_name the source is external and, unless --split says otherwise, all of
its images are evaluated. Test-time augmentation and temperature default to the model's own (stored by
``train.py --tta ... --calibrate``), and so do the input sizes unless --image_size/--resize_size are given.

Writes to ``--output_dir`` (default ``<run>/eval_<split>``, or ``<run>/eval_<folder name>`` for an
external folder): metrics.json, per_class.csv, predictions.csv (path, true, predicted, probabilities),
confusion_matrix[_normalized].png, roc_curves.png, per_class.png, reliability.png, and with --explain N
explain/<class>.png; prints a summary table.

This script is ``skinacc evaluate`` (``python -m skinacc evaluate``, or ``accelerate launch ... -m skinacc
evaluate``): it runs :mod:`skinacc.cli.evaluate`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("evaluate")
