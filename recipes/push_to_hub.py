"""Publish a trained model to the Hugging Face Hub in timm's format, with a model card.

    python recipes/push_to_hub.py --model outputs/demo --hub_model_id my-org/skinacc-demo
    python recipes/push_to_hub.py --model outputs/demo --dry_run --output_dir outputs/demo/hub   # no upload

The folder holds config.json (architecture, num_classes, label_names, pretrained_cfg with mean, std,
input size and crop), model.safetensors, class_map.txt (timm's --class-map format) and README.md (a
model card built with huggingface_hub: Hub metadata with base model, licence and eval results, test
metrics, training set-up, intended use, limitations). It loads with ``timm.create_model("hf-hub:<id>", pretrained=True)`` and
with transformers' ``pipeline("image-classification", model="<id>")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from _cli import parse_args, run

from skinacc.hub import export_for_hub, push_folder_to_hub


@dataclass
class PushArguments:
    """What to publish and where."""

    model: str = field(
        default="outputs/demo", metadata={"help": "A skinacc run directory (its best/ model is published)."}
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repository, '<user-or-org>/<name>'."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the Hub folder is written (default: <run>/hub)."}
    )
    dry_run: bool = field(default=False, metadata={"help": "Write the folder only; do not upload."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    license: str | None = field(
        default=None,
        metadata={
            "help": "Licence id for the model card, e.g. cc-by-nc-sa-4.0 (the shared ISIC set's HAM10000 terms). "
            "Default: 'other', the training data's terms apply."
        },
    )

    def validate(self) -> list[str]:
        p = []
        if not self.dry_run and not self.hub_model_id:
            p.append("--hub_model_id is required unless --dry_run")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            p.append(f"--hub_model_id={self.hub_model_id!r}: must look like '<user-or-org>/<name>'")
        return p


def main(argv: list[str] | None = None) -> Path:
    (args,) = parse_args((PushArguments,), argv, description=__doc__)
    folder = export_for_hub(
        args.model, args.output_dir or Path(args.model) / "hub", args.hub_model_id, args.license
    )
    print(f"wrote {folder}: " + ", ".join(sorted(p.name for p in folder.iterdir())))
    if not args.dry_run:
        print(
            f"uploaded to https://huggingface.co/{args.hub_model_id}: {push_folder_to_hub(folder, args.hub_model_id, args.private)}"
        )
    return folder


if __name__ == "__main__":
    run(main)
