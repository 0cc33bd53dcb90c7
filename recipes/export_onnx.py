"""Export a trained classifier to ONNX and check it against PyTorch with onnxruntime.

    python recipes/export_onnx.py --model outputs/demo --output outputs/demo/model.onnx

The graph takes ``pixel_values`` (N, 3, S, S; normalised with the model's mean/std, dynamic N) and
returns ``logits``. Label names, mean, std, input and resize size are stored in the model's
``metadata_props`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``; values that are not
strings are JSON). The maximum absolute logit difference to PyTorch on random inputs is printed and
written to ``<output>.json`` beside the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _cli import parse_args, run

from skinacc.hub import load_model
from skinacc.inference import export_onnx, onnx_max_abs_diff


@dataclass
class OnnxArguments:
    """What to export."""

    model: str = field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )
    output: str | None = field(default=None, metadata={"help": "ONNX file (default: <run>/model.onnx)."})
    opset: int = field(default=18, metadata={"help": "ONNX opset."})
    check_batch: int = field(default=4, metadata={"help": "Batch size of the PyTorch-vs-onnxruntime check."})
    tolerance: float = field(default=1e-3, metadata={"help": "Largest acceptable max-abs logit difference."})

    def validate(self) -> list[str]:
        return [f"--check_batch={self.check_batch}: must be >= 1"] if self.check_batch < 1 else []


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_args((OnnxArguments,), argv, description=__doc__)
    model, labels, cfg = load_model(args.model)[:3]
    out = Path(
        args.output or (Path(args.model) / "model.onnx" if Path(args.model).is_dir() else "model.onnx")
    )
    meta = {
        "label_names": labels,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "input_size": [3, cfg.image_size, cfg.image_size],
        "resize_size": cfg.resize_size,
        "interpolation": cfg.interpolation,
        "input_range": "RGB scaled to [0, 1], then (x - mean) / std",
    }
    export_onnx(model, out, cfg.image_size, args.opset, metadata=meta)
    torch.manual_seed(0)
    check = onnx_max_abs_diff(model, out, torch.randn(args.check_batch, 3, cfg.image_size, cfg.image_size))
    report = {
        "onnx": str(out),
        "image_size": cfg.image_size,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "labels": labels,
        **check,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(
        f"exported {out} ({out.stat().st_size / 2**20:.1f} MiB); onnxruntime vs PyTorch: max |diff| = {check['max_abs_diff']:.2e} (max |logit| {check['max_abs_logit']:.2f}), same top-1 {check['same_top1']:.0%}"
    )
    if check["max_abs_diff"] > args.tolerance:
        raise ValueError(
            f"onnxruntime differs from PyTorch by {check['max_abs_diff']:.2e} > --tolerance={args.tolerance}"
        )
    return report


if __name__ == "__main__":
    run(main)
