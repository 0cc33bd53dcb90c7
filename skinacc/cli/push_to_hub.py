"""Publish a trained model to the Hugging Face Hub in timm's format, with a model card.

    python recipes/push_to_hub.py --model outputs/demo --hub_model_id my-org/skinacc-demo
    skinacc push-to-hub --model outputs/demo --dry_run --output_dir outputs/demo/hub   # no upload

The folder holds config.json (architecture, num_classes, label_names, pretrained_cfg with mean, std,
input size and crop), model.safetensors, class_map.txt (timm's --class-map format) and README.md (a
model card built with huggingface_hub: Hub metadata with base model, licence and eval results, test
metrics, training set-up, intended use, limitations). It loads with
``timm.create_model("hf-hub:<id>", pretrained=True)`` and with transformers'
``pipeline("image-classification", model="<id>")``.

A cross-validation's ensemble (``--model outputs/cv5`` or ``outputs/cv5/ensemble``) is published whole:
each member's timm files under members/, ensemble.json and its model card. It loads back as one model
with ``skinacc.load_model("hf-hub:<id>")`` (and ``skinacc predict|evaluate|app --model hf-hub:<id>``).
"""

from __future__ import annotations

from pathlib import Path

from skinacc.cli.common import parse_args
from skinacc.config.inference import PushArguments
from skinacc.hub import export_for_hub, push_folder_to_hub


def main(argv: list[str] | None = None) -> Path:
    (args,) = parse_args((PushArguments,), argv, description=__doc__)
    folder = export_for_hub(
        args.model, args.output_dir or Path(args.model) / "hub", args.hub_model_id, args.license
    )
    print(f"wrote {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    if not args.dry_run:
        url = push_folder_to_hub(folder, args.hub_model_id, args.private)
        print(f"uploaded to https://huggingface.co/{args.hub_model_id}: {url}")
    return folder
