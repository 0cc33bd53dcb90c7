"""A web demo of a trained classifier: upload a photo (or pick an example), see the top-k classes, the
Grad-CAM heat map of the top class, and the model card's intended use. Not a medical device.

    python recipes/app.py --model outputs/demo                      # http://127.0.0.1:7860
    skinacc app --model outputs/dermoscopy --examples ../shared/data/isic8-dermoscopy/melanoma
    skinacc app --model hf-hub:my-org/skinacc-b3 --server_name 0.0.0.0 --server_port 8080
    skinacc app --model outputs/demo --share               # a public *.gradio.live link

Needs ``pip install "skinacc[app]"`` (Gradio and grad-cam). The page is built by
:func:`skinacc.demo.build_demo`; a Hugging Face Space runs the same page (README, "A web demo").
"""

from __future__ import annotations

import logging

from skinacc.cli.common import parse_args
from skinacc.config.inference import AppArguments
from skinacc.demo import serve


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args((AppArguments,), argv, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(args)
