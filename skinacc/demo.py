"""The web demo: upload a photo, see the top-k classes, where the model looked, and what it is for.

:class:`ImageClassifier` is the demo's whole behaviour and needs no web framework (it is what the
latency benchmark and the tests call); :func:`build_demo` wraps it in a Gradio page
(``pip install "skinacc[app]"``). ``recipes/app.py`` launches it from the command line; a Hugging Face
Space runs it with two lines (README, "A web demo").

Every upload is checked before the model sees it: a file that is not an image, a truncated one, or
one too large to decode safely gets a plain message in the page, never a stack trace.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinacc.artifact import LoadedModel
from skinacc.clinical.decision import DISCLAIMER
from skinacc.data.images import open_image
from skinacc.inference import preprocess
from skinacc.model_card import read_model_card
from skinacc.predictor import Predictor

__all__ = [
    "NOT_A_MEDICAL_DEVICE",
    "ImageClassifier",
    "Prediction",
    "build_demo",
    "intended_use",
    "make_demo",
    "serve",
]

logger = logging.getLogger(__name__)

NOT_A_MEDICAL_DEVICE = (
    "**Not a medical device.** This demo is for research and education. It has not been clinically "
    "validated and must not be used to diagnose, treat or triage anyone. It can be confidently wrong, "
    "especially on skin tones, cameras, body sites and conditions under-represented in its training data. "
    "See a dermatologist about any skin concern."
)

ACCEPTED = "JPEG, PNG, BMP, TIFF or WebP photograph"


@dataclass
class Prediction:
    """What the page shows for one upload.

    Attributes:
        top_k: ``[(label, probability), ...]``, most likely first (empty on error).
        view: uint8 ``(S, S, 3)``: the crop the model classified.
        overlay: uint8 ``(S, S, 3)``: Grad-CAM of the top-1 class over ``view`` (None when off).
        error: A message for the user when the upload cannot be classified.
    """

    top_k: list[tuple[str, float]] = field(default_factory=list)
    view: np.ndarray | None = None
    overlay: np.ndarray | None = None
    error: str | None = None
    decision: dict[str, Any] | None = None


class ImageClassifier:
    """A loaded model behind one call: ``path -> Prediction``; never raises on a user's file.

    Args:
        loaded: From :func:`skinacc.hub.load_model`.
        top_k: Classes reported.
        tta: Test-time augmentation (default: the model's stored setting).
        temperature: Softmax temperature (default: the model's calibrated one).
        explain: Compute a Grad-CAM overlay of the top-1 class.
        cam_layer: Layer to explain (default: the last spatial feature map).
        cam_method: A :data:`skinacc.explain.CAM_METHODS` key.
        max_pixels: Larger images are refused with a message (decoding them could exhaust memory).
        max_bytes: Larger files are refused with a message.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        top_k: int = 3,
        tta: str | None = None,
        temperature: float | None = None,
        explain: bool = True,
        cam_layer: str | None = None,
        cam_method: str = "gradcam",
        max_pixels: int = 40_000_000,
        max_bytes: int = 30_000_000,
    ):
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.labels = loaded.label_names
        self.top_k = min(top_k, len(self.labels))
        self.tta = tta or loaded.tta
        self.temperature = temperature or loaded.temperature
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self.device = next(self.model.parameters()).device
        self.predictor = Predictor.from_loaded(loaded, tta=self.tta, temperature=self.temperature)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinacc-classifier")
        self.explainer = None
        if explain:
            from skinacc.explain import Explainer

            self.explainer = Explainer(self.model, loaded.data_cfg, cam_layer, cam_method, self.temperature)

    def check(self, path: str | os.PathLike | None) -> str | None:
        """A message saying why ``path`` cannot be classified, or None if it can be tried."""
        from PIL import Image, UnidentifiedImageError

        if path is None:
            return f"Upload a {ACCEPTED}, or pick an example."
        p = Path(path)
        name = p.name
        if not p.is_file():
            return f"The upload `{name}` did not arrive; try again."
        size = p.stat().st_size
        if size == 0:
            return f"`{name}` is empty (0 bytes). Upload a {ACCEPTED}."
        if size > self.max_bytes:
            return (
                f"`{name}` is {size / 1e6:.0f} MB; this demo takes files up to {self.max_bytes / 1e6:.0f} MB."
            )
        try:
            with open_image(p) as img:  # reads the header only (skinacc's pixel limit)
                w, h = img.size
                fmt = img.format
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            return f"`{name}` is not an image this demo can read ({_short(e)}). Upload a {ACCEPTED}."
        if w * h > self.max_pixels:
            return (
                f"`{name}` is {w}x{h} pixels ({w * h / 1e6:.0f} MP); this demo takes images up to "
                f"{self.max_pixels / 1e6:.0f} MP. Downscale it first."
            )
        if fmt not in {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "MPO", "GIF"}:
            return f"`{name}` is a {fmt} file. Upload a {ACCEPTED}."
        return None

    def __call__(self, path: str | os.PathLike | None) -> Prediction:
        """Classify one uploaded file; explain the top-1 class when enabled.

        The work runs on the classifier's own thread, whichever thread calls: a web server answers each
        request on any of its pool's threads (Gradio: up to 40), and every thread that runs the model
        grows its own allocator arena and OpenMP team, so memory rose with every Grad-CAM request
        (+1 MB each over 500 requests) instead of staying flat.
        """
        return self._worker.submit(self._classify, path).result()

    def close(self) -> None:
        """End the classifier's thread (it also ends with the process)."""
        self._worker.shutdown(wait=True)

    @torch.no_grad()
    def _classify(self, path: str | os.PathLike | None) -> Prediction:
        problem = self.check(path)
        if problem:
            return Prediction(error=problem)
        pixels, bad = preprocess([str(path)], self.loaded.data_cfg)
        if bad:  # decodes its header but not its data: truncated or corrupt
            return Prediction(
                error=f"`{Path(path).name}` could not be decoded ({_short(bad[0])}): the file is damaged "
                f"or incomplete. Upload a {ACCEPTED}."
            )
        z = self.predictor.logits(pixels).cpu()
        probs = self.predictor.probs(z)[0]
        decision = None
        if self.loaded.decision:  # the model's rules, chosen on validation (skinacc.clinical.decision)
            disagreement = self.predictor.disagreement(z)
            decision = self.loaded.decision.decide(probs[None], self.labels, disagreement)[0]
        order = np.argsort(-probs)[: self.top_k]
        top = [(self.labels[i], float(probs[i])) for i in order]
        view = pixels[0].permute(1, 2, 0).numpy()
        cam = None
        if self.explainer is not None:
            from skinacc.explain import overlay

            res = self.explainer(pixels, [int(order[0])])
            cam = overlay(view, res.cams[0])
        return Prediction(top_k=top, view=view, overlay=cam, decision=decision)


def decision_markdown(d: dict[str, Any] | None) -> str:
    """The model's decisions for one image as page text, with the not-a-medical-device wording."""
    if not d:
        return ""
    lines = [
        f"- {k}: {v['probability']:.1%}, **{v['decision']}** ({v['rule']})"
        for k, v in d.items()
        if k != "uncertain"
    ]
    if d.get("uncertain"):
        lines.append("- **uncertain: refer** (the model is less sure than on most validation images)")
    return "\n\nDecision rules stored with the model:\n" + "\n".join(lines) + f"\n\n*{DISCLAIMER}*"


DISPLAY_SIZE = 288  # small model inputs (e.g. 160 px) are enlarged for the page


def _at_least(picture: np.ndarray, height: int) -> np.ndarray:
    """Enlarge a picture to ``height`` pixels high (display only; the model saw the original)."""
    from PIL import Image

    h, w = picture.shape[:2]
    if h >= height:
        return picture
    return np.asarray(
        Image.fromarray(picture).resize((round(w * height / h), height), Image.Resampling.BICUBIC)
    )


def _short(e: Any) -> str:
    text = str(e)
    # PIL names the temporary upload path; the user knows their file by its own name.
    text = re.sub(r"'?/[^ ']*/", "'", text)
    return text[:160]


def intended_use(spec: str) -> str:
    """The model card's "Intended use" section (Markdown), or a note saying the card has none."""
    card = read_model_card(spec)
    if not card:
        return "This model ships no model card (README.md): its intended use and limits are unknown."
    m = re.search(r"^##+ *Intended use[^\n]*\n(.*?)(?=^##+ |\Z)", card, re.M | re.S | re.I)
    if not m:
        return "The model card has no 'Intended use' section: its intended use and limits are unknown."
    return m.group(1).strip()


def build_demo(
    classifier: ImageClassifier,
    model_name: str,
    examples: list[str] | None = None,
    card_text: str | None = None,
):
    """The Gradio page around ``classifier``.

    Args:
        classifier: What answers each upload.
        model_name: Shown in the title.
        examples: Image paths offered as clickable examples.
        card_text: The intended-use text (default: from the model card via :func:`intended_use`).

    Returns:
        A ``gradio.Blocks`` (call ``.launch()``); its ``classify`` handler is attached as
        ``demo.skinacc_handler`` for tests and benchmarks.
    """
    try:
        import gradio as gr
    except ImportError as e:
        raise ImportError('the web demo needs gradio: pip install "skinacc[app]"') from e

    card_text = card_text if card_text is not None else intended_use(model_name)
    k = classifier.top_k

    def classify(path: str | None) -> tuple[str, dict[str, float] | None, Any]:
        if path is None:  # the upload was cleared
            return f"Upload a {ACCEPTED}, or pick an example.", None, None
        try:
            pred = classifier(path)
        except Exception as e:  # the page shows a message; the server log keeps the traceback
            logger.exception("classifying %s failed", path)
            return f"**Something went wrong** while classifying this image ({type(e).__name__}).", None, None
        if pred.error:
            return f"**Cannot classify this file.** {pred.error}", None, None
        label, prob = pred.top_k[0]
        text = f"Top-1: **{label}** ({prob:.1%})"
        panels = [pred.view]
        if pred.overlay is not None:
            text += f". The heat map shows the regions that raised the score of *{label}* (Grad-CAM)."
            panels += [np.full_like(pred.view[:, :8], 255), pred.overlay]
        text += decision_markdown(pred.decision)
        return text, dict(pred.top_k), _at_least(np.concatenate(panels, 1), DISPLAY_SIZE)

    with gr.Blocks(title=f"skinacc: {model_name}", analytics_enabled=False) as demo:
        gr.Markdown(f"# Skin-lesion classifier\nModel: `{model_name}`, {len(classifier.labels)} classes.")
        gr.Markdown(NOT_A_MEDICAL_DEVICE, elem_id="notice")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label=f"Upload a {ACCEPTED}", type="filepath", elem_id="upload")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[upload], label="Examples")
            with gr.Column():
                status = gr.Markdown(f"Upload a {ACCEPTED}, or pick an example.", elem_id="status")
                top = gr.Label(num_top_classes=k, label=f"Top {k} classes", elem_id="topk")
                picture = gr.Image(
                    label="What the model saw | Grad-CAM of its top class",
                    type="numpy",
                    interactive=False,
                    elem_id="cam",
                )
        with gr.Accordion("Intended use and limitations (from the model card)", open=True):
            gr.Markdown(card_text, elem_id="intended-use")
        upload.change(classify, inputs=[upload], outputs=[status, top, picture], api_name="classify")
    demo.skinacc_handler = classify
    return demo


def make_demo(args):
    """The page for ``args`` (an :class:`skinacc.config.inference.AppArguments`), and its examples."""
    from skinacc.artifact import load_model
    from skinacc.inference import collect_images

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


def serve(args) -> None:
    """Build the page for ``args`` and serve it until interrupted (``skinacc app``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
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
