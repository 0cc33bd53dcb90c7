"""A web demo of a trained classifier: upload a photo (or pick an example), see the top-k classes, the
Grad-CAM heat map of the top class, and the model card's intended use. Not a medical device.

    python recipes/app.py --model outputs/demo                      # http://127.0.0.1:7860
    python recipes/app.py --model outputs/dermoscopy --examples ../shared/data/isic8-dermoscopy/melanoma
    python recipes/app.py --model hf-hub:my-org/skinacc-b3 --server_name 0.0.0.0 --server_port 8080
    python recipes/app.py --model outputs/demo --share               # a public *.gradio.live link

Needs ``pip install "skinacc[app]"`` (Gradio and grad-cam). The page is built by
:func:`skinacc.demo.build_demo`; a Hugging Face Space runs the same page (README, "A web demo").

This script is ``skinacc app`` (``python -m skinacc app``, or ``accelerate launch ... -m skinacc
app``): it runs :mod:`skinacc.cli.app`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("app")
