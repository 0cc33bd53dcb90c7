"""A web demo of a trained classifier: upload a photo (or pick an example), see the top-k classes, the
Grad-CAM heat map of the top class, and the model card's intended use. Not a medical device.

    python recipes/app.py --model outputs/demo                      # http://127.0.0.1:7860
    python recipes/app.py --model outputs/dermoscopy --examples ../shared/data/isic8-dermoscopy/melanoma
    python recipes/app.py --model hf-hub:my-org/skinacc-b3 --server_name 0.0.0.0 --server_port 8080
    python recipes/app.py --model outputs/demo --share               # a public *.gradio.live link

Needs ``pip install "skinacc[app]"`` (Gradio and grad-cam). The page is built by
:func:`skinacc.demo.build_demo`; a Hugging Face Space runs the same page (README, "A web demo").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from _cli import parse_args, run

from skinacc.demo import ImageClassifier, build_demo
from skinacc.explain import CAM_METHODS
from skinacc.hub import load_model
from skinacc.inference import collect_images


@dataclass
class AppArguments:
    """Which model the page serves, and where."""

    model: str = field(
        default="outputs/demo",
        metadata={"help": "A skinacc run dir, a timm folder, local-dir:<folder>, or hf-hub:<repo>."},
    )
    examples: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Example images offered on the page: files, folders or globs (first --max_examples)."
        },
    )
    max_examples: int = field(default=8, metadata={"help": "Most examples shown."})
    top_k: int = field(default=3, metadata={"help": "Classes shown per image."})
    explain: bool = field(default=True, metadata={"help": "Show the Grad-CAM overlay (--no_explain: off)."})
    cam_layer: str | None = field(
        default=None,
        metadata={
            "help": "Layer to explain (a model.named_modules() name). Default: the last spatial feature map."
        },
    )
    cam_method: str = field(default="gradcam", metadata={"help": f"CAM method: {', '.join(CAM_METHODS)}."})
    tta: Literal["none", "flip", "dihedral"] | None = field(
        default=None, metadata={"help": "Test-time augmentation. Default: the model's stored setting."}
    )
    max_megapixels: float = field(
        default=40.0, metadata={"help": "Larger uploads are refused with a message."}
    )
    max_file_size_mb: float = field(default=30.0, metadata={"help": "Larger files are refused."})
    server_name: str | None = field(
        default=None,
        metadata={
            "help": "Address to listen on (0.0.0.0: every interface). Default: $GRADIO_SERVER_NAME, else 127.0.0.1."
        },
    )
    server_port: int | None = field(
        default=None,
        metadata={"help": "Port. Default: $GRADIO_SERVER_PORT, else 7860 (Gradio's own defaults)."},
    )
    max_queue: int | None = field(
        default=None,
        metadata={
            "help": "Most requests waiting in the queue; more are refused at once with 'queue full' instead "
            "of waiting (one request is classified at a time: about 0.3 s each with Grad-CAM on 2 CPU "
            "cores, so 50 waiting uploads wait up to ~18 s). Default: no limit."
        },
    )
    share: bool = field(default=False, metadata={"help": "Also open a public gradio.live link."})
    device: str = field(
        default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "cpu, cuda, cuda:1 ..."}
    )

    def validate(self) -> list[str]:
        p = []
        if self.top_k < 1:
            p.append(f"--top_k={self.top_k}: must be >= 1")
        if self.max_queue is not None and self.max_queue < 1:
            p.append(f"--max_queue={self.max_queue}: must be >= 1 (or unset: no limit)")
        if self.server_port is not None and not 1 <= self.server_port <= 65535:
            p.append(f"--server_port={self.server_port}: must be a port number, 1-65535")
        if self.cam_method not in CAM_METHODS:
            p.append(f"--cam_method={self.cam_method!r}: expected one of {', '.join(CAM_METHODS)}")
        if self.max_megapixels <= 0 or self.max_file_size_mb <= 0:
            p.append("--max_megapixels and --max_file_size_mb must be > 0")
        if self.max_examples < 0:
            p.append(f"--max_examples={self.max_examples}: must be >= 0")
        return p


def make_demo(args: AppArguments):
    """The page for ``args`` (also used by the latency benchmark and the browser test)."""
    loaded = load_model(args.model, args.device)
    classifier = ImageClassifier(
        loaded,
        top_k=args.top_k,
        tta=args.tta,
        explain=args.explain,
        cam_layer=args.cam_layer,
        cam_method=args.cam_method,
        max_pixels=int(args.max_megapixels * 1e6),
        max_bytes=int(args.max_file_size_mb * 1e6),
    )
    examples = collect_images(args.examples)[: args.max_examples] if args.examples else []
    return build_demo(classifier, args.model, examples), examples


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args((AppArguments,), argv, description=__doc__)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo, examples = make_demo(args)
    demo.queue(max_size=args.max_queue).launch(
        # None: Gradio takes GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else 127.0.0.1:7860.
        server_name=args.server_name,
        server_port=args.server_port,
        share=args.share,
        # Gradio refuses larger uploads itself, with a message in the page; the classifier re-checks.
        max_file_size=int(args.max_file_size_mb * 1e6),
        allowed_paths=sorted({os.path.dirname(os.path.abspath(e)) for e in examples}),
        ssr_mode=False,
    )


if __name__ == "__main__":
    run(main)
