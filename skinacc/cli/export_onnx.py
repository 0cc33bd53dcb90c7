"""Export a trained classifier to ONNX and check it against PyTorch with onnxruntime.

    python recipes/export_onnx.py --model outputs/demo --output outputs/demo/model.onnx
    skinacc export-onnx --model hf-hub:my-org/skinacc-b3 --output b3.onnx

The graph takes ``pixel_values`` (N, 3, S, S; normalised with the model's mean/std, dynamic N) and
returns ``logits``. Label names, mean, std, input and resize size are stored in the model's
``metadata_props`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``; values that are not
strings are JSON). The maximum absolute logit difference to PyTorch on random inputs is printed and
written to ``<output>.json`` beside the model.
"""

from __future__ import annotations

from typing import Any

from skinacc.cli.common import parse_args
from skinacc.config.inference import OnnxArguments
from skinacc.onnx_export import export_model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (args,) = parse_args((OnnxArguments,), argv, description=__doc__)
    return export_model(args)
