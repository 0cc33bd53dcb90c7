"""Predict skin-lesion classes for images: top-k labels with probabilities.

    python recipes/predict.py --model outputs/demo --inputs photo.jpg more_photos/ "batch/*.png" --top_k 3
    skinacc predict --model hf-hub:my-org/skinacc-b3 --inputs scans/ --output predictions.json
    skinacc predict --model outputs/dermoscopy --inputs photo.jpg --tta dihedral
    skinacc predict --model outputs/demo --inputs photos/ --output preds.csv --explain  # + Grad-CAM PNGs
    skinacc predict --model outputs/dermoscopy --inputs /data/archive --output preds.csv --resume  # 100k+ images

Probabilities use the model's stored test-time augmentation and calibrated temperature (written by
``train --tta ... --calibrate``) unless --tta/--temperature say otherwise.

Inputs are files, folders (searched recursively) or glob patterns. Prints a table (up to 200 images)
and writes CSV, JSON Lines or JSON (by the --output suffix). Any number of images: all cores decode
(--num_workers), a progress bar counts them, .csv/.jsonl results are written batch by batch, so memory
stays flat, and --resume continues a stopped run where its file ends. ``--explain`` also writes a
Grad-CAM overlay per image (the view the model classified, heat map of the top-1 class) to
--explain_dir, named in the results. Not a medical device.
"""

from __future__ import annotations

from skinacc.cli.common import parse_args
from skinacc.config.inference import PredictArguments
from skinacc.prediction import predict_files


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = parse_args((PredictArguments,), argv, description=__doc__)
    return predict_files(args)
