"""Publish a trained model to the Hugging Face Hub in timm's format, with a model card.

    python recipes/push_to_hub.py --model outputs/demo --hub_model_id my-org/skinacc-demo
    python recipes/push_to_hub.py --model outputs/demo --dry_run --output_dir outputs/demo/hub   # no upload

The folder holds config.json (architecture, num_classes, label_names, pretrained_cfg with mean, std,
input size and crop), model.safetensors, class_map.txt (timm's --class-map format) and README.md (a
model card built with huggingface_hub: Hub metadata with base model, licence and eval results, test
metrics, training set-up, intended use, limitations). It loads with ``timm.create_model("hf-hub:<id>", pretrained=True)`` and
with transformers' ``pipeline("image-classification", model="<id>")``.

This script is ``skinacc push-to-hub`` (``python -m skinacc push-to-hub``, or ``accelerate launch ... -m skinacc
push-to-hub``): it runs :mod:`skinacc.cli.push_to_hub`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("push-to-hub")
