"""Predict skin-lesion classes for images: top-k labels with probabilities.

    python recipes/predict.py --model outputs/demo --inputs photo.jpg more_photos/ "batch/*.png" --top_k 3
    python recipes/predict.py --model hf-hub:my-org/skinacc-b3 --inputs scans/ --output predictions.json
    python recipes/predict.py --model outputs/dermoscopy --inputs photo.jpg --tta dihedral
    python recipes/predict.py --model outputs/demo --inputs photos/ --output preds.csv --explain  # + Grad-CAM PNGs
    python recipes/predict.py --model outputs/dermoscopy --inputs /data/archive --output preds.csv --resume  # 100k+ images

Probabilities use the model's stored test-time augmentation and calibrated temperature (written by
``train.py --tta ... --calibrate``) unless --tta/--temperature say otherwise.

Inputs are files, folders (searched recursively) or glob patterns. Prints a table (up to 200 images)
and writes CSV, JSON Lines or JSON (by the --output suffix). Any number of images: all cores decode
(--num_workers), a progress bar counts them, .csv/.jsonl results are written batch by batch, so memory
stays flat, and --resume continues a stopped run where its file ends. ``--explain`` also writes a Grad-CAM overlay per image (the view the
model classified, heat map of the top-1 class) to --explain_dir, named in the results. Not a medical
device.

This script is ``skinacc predict`` (``python -m skinacc predict``, or ``accelerate launch ... -m skinacc
predict``): it runs :mod:`skinacc.cli.predict`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("predict")
