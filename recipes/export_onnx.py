"""Export a trained classifier to ONNX and check it against PyTorch with onnxruntime.

    python recipes/export_onnx.py --model outputs/demo --output outputs/demo/model.onnx

The graph takes ``pixel_values`` (N, 3, S, S; normalised with the model's mean/std, dynamic N) and
returns ``logits``. Label names, mean, std, input and resize size are stored in the model's
``metadata_props`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``; values that are not
strings are JSON). The maximum absolute logit difference to PyTorch on random inputs is printed and
written to ``<output>.json`` beside the model.

This script is ``skinacc export-onnx`` (``python -m skinacc export-onnx``, or ``accelerate launch ... -m skinacc
export-onnx``): it runs :mod:`skinacc.cli.export_onnx`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("export-onnx")
