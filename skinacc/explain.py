"""Class activation maps (Grad-CAM) over any timm CNN: where the model looked, as heat-map overlays.

Built on `grad-cam <https://github.com/jacobgil/pytorch-grad-cam>`_ (``pip install "skinacc[explain]"``):
the most used CAM library, maintained, model-agnostic (any ``nn.Module`` and any layer), with
Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM and the gradient-free EigenCAM behind one call. torchcam
was the other candidate; it chooses a layer for you, but grad-cam is more widely used and reviewed,
and skinacc picks the layer itself (below) so that the choice is the same for every method.

The default target layer is the model's last spatial feature map: the last module, in execution
order, whose output is ``(N, C, H, W)`` with ``H, W > 1`` (EfficientNet's ``bn2`` after ``conv_head``,
ResNet's ``layer4``, MobileNetV3's last block, ConvNeXt's ``stages``), found with one forward pass.
That is the layer Grad-CAM's authors used ("the last convolutional layer"), and it needs no table of
architectures that goes stale. ``--cam_layer`` names another (any ``model.named_modules()`` name).

Maps are computed on the exact view the model classifies (resize and centre crop of the model's data
config), for the class the model predicts unless a target is given, and overlaid on that view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skinacc.config.inference import CAM_METHODS
from skinacc.data.data_config import DataConfig
from skinacc.predictor import Predictor

__all__ = [
    "CAM_METHODS",
    "CamResult",
    "Explainer",
    "default_cam_layer",
    "explain_sources",
    "overlay",
    "select_cases",
    "spatial_layers",
    "write_case_grids",
]


INSTALL_HINT = 'explanations need the grad-cam package: pip install "skinacc[explain]"'


def _import_grad_cam():
    try:
        import pytorch_grad_cam
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return pytorch_grad_cam


@torch.no_grad()
def spatial_layers(model: nn.Module, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Modules whose output is a spatial feature map ``(N, C, H>1, W>1)``, in the order their outputs
    are produced by one forward pass (so the last is the deepest map before pooling).

    Identity modules are left out: they repeat the map of the module before them.
    """
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in model.named_modules():
        if not name or isinstance(mod, nn.Identity):
            continue

        def hook(_m, _inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
                order.append((name, tuple(out.shape[1:])))

        hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


def default_cam_layer(model: nn.Module, image_size: int) -> str:
    """Name of the last spatial feature map of ``model`` (see the module docstring).

    Raises:
        ValueError: The model has no spatial feature map (a vision transformer or an MLP): Grad-CAM
            here is for CNNs.
    """
    layers = spatial_layers(model, image_size)
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    if not layers:
        raise ValueError(f"model {arch!r} has no (N, C, H, W) feature map: Grad-CAM here needs a CNN")
    feats = None
    if hasattr(model, "forward_features"):
        with torch.no_grad():
            device = next(model.parameters()).device
            feats = model.eval().forward_features(torch.zeros(1, 3, image_size, image_size, device=device))
    if feats is not None and feats.ndim != 4:
        raise ValueError(
            f"model {arch!r} gives features of shape {tuple(feats.shape)}, not (N, C, H, W): it is not a "
            "CNN, and Grad-CAM here needs one (pass --cam_layer only for CNN-like models)"
        )
    return layers[-1][0]


@dataclass
class CamResult:
    """Maps and predictions for a batch.

    Attributes:
        cams: ``(N, S, S)`` float32 maps in [0, 1] (each scaled to its own maximum), S the input size.
        targets: The class each map explains.
        probs: ``(N, num_classes)`` softmax of the single-view logits (temperature applied).
    """

    cams: np.ndarray
    targets: list[int]
    probs: np.ndarray


class Explainer:
    """Grad-CAM (or another CAM method) for a classifier, on uint8 batches as skinacc's loaders give.

    Args:
        model: A timm CNN (or any CNN classifier).
        data_cfg: The model's data config (input size, mean, std).
        layer: Target layer name (``model.named_modules()``); default :func:`default_cam_layer` (for an
            ensemble, each member's, comma-separated: grad-cam averages the maps).
        method: One of :data:`CAM_METHODS`.
        temperature: Softmax temperature for the reported probabilities.

    Raises:
        ValueError: An unknown method or layer (the message lists the valid ones).
        ImportError: grad-cam is not installed.

    The model's hooks are added for each call and removed after it, so the same model can serve plain
    predictions in between.
    """

    def __init__(
        self,
        model: nn.Module,
        data_cfg: DataConfig,
        layer: str | None = None,
        method: str = "gradcam",
        temperature: float = 1.0,
    ):
        if method not in CAM_METHODS:
            raise ValueError(f"--cam_method={method!r}: expected one of {sorted(CAM_METHODS)}")
        cam_lib = _import_grad_cam()
        self.model = model.eval()
        self.data_cfg = data_cfg
        self.temperature = temperature
        self.device = next(model.parameters()).device
        # The one inference path's normalisation and tempered softmax (single view: the map is of it).
        self.predictor = Predictor(model, data_cfg, temperature=temperature, device=self.device)
        if layer is None and hasattr(model, "members"):
            # An ensemble (skinacc.ensemble): every member's last map; grad-cam averages their maps.
            layers = [
                f"members.{i}.{default_cam_layer(m, data_cfg.image_size)}"
                for i, m in enumerate(model.members)
            ]
            layer = ",".join(layers)
        elif layer is None:
            layer = default_cam_layer(model, data_cfg.image_size)
        else:
            names = dict(model.named_modules())
            if layer not in names:
                spatial = [n for n, _ in spatial_layers(model, data_cfg.image_size)]
                raise ValueError(
                    f"--cam_layer={layer!r}: no such module in the model; its spatial feature maps are, "
                    f"deepest last: {spatial[-8:]}"
                )
        self.layer = layer
        self.method = method
        self._cam_cls = getattr(cam_lib, CAM_METHODS[method])

    def __call__(self, pixels: torch.Tensor, targets: Sequence[int] | None = None) -> CamResult:
        """Maps for a uint8 ``(N, 3, S, S)`` batch.

        Args:
            pixels: Preprocessed images (:func:`skinacc.inference.preprocess`).
            targets: Class per image to explain; default the predicted class.
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        x = self.predictor.normalize(pixels)
        # grad-cam needs gradients through the model even when the caller runs under no_grad.
        # grad-cam's hooks live only for this call: any other forward pass of the model (predictions,
        # evaluation) would otherwise append its activations to the hooks' lists and hold them.
        layers = [self.model.get_submodule(name) for name in self.layer.split(",")]
        cam = self._cam_cls(model=self.model, target_layers=layers)
        try:
            # One forward and one backward: grad-cam keeps the logits of its own forward pass.
            with torch.enable_grad():
                wanted = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
                cams = cam(input_tensor=x, targets=wanted)
                logits = cam.outputs.detach().float()
        finally:
            cam.activations_and_grads.release()
            cam.outputs = None
        chosen = list(targets) if targets is not None else logits.argmax(-1).tolist()
        self.model.zero_grad(set_to_none=True)  # CAM's backward leaves parameter grads; drop them
        probs = self.predictor.probs(logits)
        return CamResult(np.asarray(cams, dtype=np.float32), [int(t) for t in chosen], probs)


def overlay(image: np.ndarray | torch.Tensor, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A heat map (jet colour map) blended over the image.

    Args:
        image: uint8 ``(3, H, W)`` tensor or ``(H, W, 3)`` array: the view the model saw.
        cam: ``(H, W)`` map in [0, 1].
        alpha: Weight of the heat map.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if cam.shape != arr.shape[:2]:
        raise ValueError(f"map of shape {cam.shape} does not match image of shape {arr.shape[:2]}")
    return show_cam_on_image(arr.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1 - alpha)


def explain_sources(
    explainer: Explainer,
    sources: Sequence,
    targets: Sequence[int] | None = None,
    batch_size: int = 32,
) -> list[dict]:
    """Maps for images given as paths, ``datasets`` image values or PIL images.

    Args:
        explainer: The :class:`Explainer`.
        sources: What :func:`skinacc.data.images.load_rgb` reads.
        targets: Class to explain per image (default: the predicted class).
        batch_size: Images per forward/backward pass.

    Returns:
        Per image, ``{"view": uint8 (S, S, 3), "cam": (S, S), "overlay": uint8 (S, S, 3), "target": int,
        "prob": float}`` (the probability of the explained class, single view), or ``{"error": reason}``
        for an image that cannot be decoded.
    """
    from skinacc.inference import preprocess

    out: list[dict] = []
    for start in range(0, len(sources), batch_size):
        chunk = list(sources[start : start + batch_size])
        pixels, bad = preprocess(chunk, explainer.data_cfg)
        result = None
        if len(pixels):
            given = None
            if targets is not None:
                given = [targets[start + i] for i in range(len(chunk)) if i not in bad]
            result = explainer(pixels, given)
        row = 0
        for i in range(len(chunk)):
            if i in bad:
                out.append({"error": f"could not decode image ({bad[i]})"})
                continue
            view = pixels[row].permute(1, 2, 0).numpy()
            cam = result.cams[row]
            t = result.targets[row]
            out.append(
                {
                    "view": view,
                    "cam": cam,
                    "overlay": overlay(view, cam),
                    "target": t,
                    "prob": float(result.probs[row, t]),
                }
            )
            row += 1
    return out


def select_cases(labels: np.ndarray, probs: np.ndarray, n: int) -> dict[int, dict[str, list[int]]]:
    """Rows to explain per true class: the ``n`` most confident errors and the ``n`` most confident
    correct predictions.

    Args:
        labels: ``(N,)`` true class (model column indices).
        probs: ``(N, C)`` probabilities.
        n: Cases of each kind per class.

    Returns:
        ``{class: {"errors": [row, ...], "correct": [row, ...]}}`` for every class present in ``labels``,
        most confident first.
    """
    pred = probs.argmax(1)
    conf = probs.max(1)
    cases: dict[int, dict[str, list[int]]] = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        order = rows[np.argsort(-conf[rows], kind="stable")]
        cases[int(c)] = {
            "errors": [int(r) for r in order if pred[r] != c][:n],
            "correct": [int(r) for r in order if pred[r] == c][:n],
        }
    return cases


def write_case_grids(
    explainer: Explainer,
    source_of: Callable[[int], Any],
    labels: np.ndarray,
    probs: np.ndarray,
    label_names: Sequence[str],
    n: int,
    out_dir,
    batch_size: int = 32,
) -> dict[str, Path]:
    """Per true class, a PNG grid: the ``n`` most confident errors (top row) and ``n`` most confident
    correct cases (bottom row), each the Grad-CAM overlay of the class the model predicted.

    Args:
        explainer: The :class:`Explainer`.
        source_of: Row index -> its image (path or ``datasets`` image value); called only for the rows
            shown.
        labels: ``(N,)`` true classes (model column indices); ``probs``: ``(N, C)`` as evaluated.
        label_names: Class names of the model's columns.
        n: Cases of each kind per class.
        out_dir: Folder for ``<class>.png``.

    Returns:
        ``{class name: png path}``.
    """
    from PIL import Image

    from skinacc.plots import plot_image_grid

    out_dir = Path(out_dir)
    cases = select_cases(labels, probs, n)
    rows = sorted({r for c in cases.values() for kind in c.values() for r in kind})
    pred = probs.argmax(1)
    maps = dict(
        zip(rows, explain_sources(explainer, [source_of(r) for r in rows], pred[rows].tolist(), batch_size))
    )
    written = {}
    for c, kinds in cases.items():
        grid = []
        for kind in ("errors", "correct"):
            cells = []
            for r in kinds[kind]:
                e = maps[r]
                caption = f"{kind[:-1] if kind == 'errors' else 'correct'}: {label_names[pred[r]]} {probs[r, pred[r]]:.2f}"
                cells.append((Image.fromarray(e["overlay"]) if "overlay" in e else b"", caption[:48]))
            grid.append(cells or [(Image.new("RGB", (8, 8), "white"), f"no {kind}")])
        name = label_names[c]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        written[name] = plot_image_grid(
            grid,
            f"true class {name}: most confident errors (top), correct (bottom); Grad-CAM of the predicted class",
            out_dir / f"{safe}.png",
        )
    return written
