"""ONNX export of a trained classifier, checked against PyTorch with onnxruntime.

The graph takes ``pixel_values`` (N, 3, S, S; normalised with the model's mean/std, dynamic N) and
returns ``logits``. Label names, mean, std, input and resize size are stored in the model's
``metadata_props`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``; values that are not
strings are JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skinacc.config.inference import OnnxArguments

__all__ = ["export_model", "export_onnx", "onnx_max_abs_diff"]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    image_size: int,
    opset: int = 18,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export a classifier to ONNX with a dynamic batch axis (input ``pixel_values``, output ``logits``).

    Args:
        metadata: Written into the model's ``metadata_props`` (non-string values as JSON), so an ONNX
            consumer finds the label names and preprocessing without the timm folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    dummy = torch.randn(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["pixel_values"],
        output_names=["logits"],
        opset_version=opset,
        dynamo=True,
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
    )
    if metadata:
        import json

        import onnx

        proto = onnx.load(str(path))
        for k, v in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
        onnx.save(proto, str(path))
    return path


def onnx_max_abs_diff(model: nn.Module, onnx_path: str | os.PathLike, x: torch.Tensor) -> dict[str, float]:
    """Run onnxruntime and PyTorch on the same input; report the largest logit difference."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"pixel_values": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        ref = model.eval().cpu()(x).numpy()
    return {
        "max_abs_diff": float(np.abs(got - ref).max()),
        "max_abs_logit": float(np.abs(ref).max()),
        "same_top1": float((got.argmax(1) == ref.argmax(1)).mean()),
    }


def export_model(args: OnnxArguments) -> dict[str, Any]:
    """``skinacc export-onnx``: export ``args.model``, store its preprocessing in the ONNX metadata, check
    onnxruntime against PyTorch, write ``<output>.json``; the report.

    Raises:
        ValueError: onnxruntime differs from PyTorch by more than ``args.tolerance``.
    """
    from skinacc.artifact import load_model

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
