"""Distribution shift: does the model know when images are unlike its training data, and do its
predictions survive changes that should not matter?

- :func:`ood_separation`: how well an uncertainty score separates images from elsewhere (``--ood_dir``,
  no labels needed) from the in-distribution test images: AUROC (0.5: blind to the shift) and the FPR
  at 95% TPR (the share of in-distribution images flagged when 95% of the outside ones are).
- :data:`PERTURBATIONS` and :func:`flip_rates`: the share of predictions that change under flips and
  quarter turns, colour, blur and scale changes (a stress report, not an accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from skinacc.clinical.weighted import auc, rates_at, roc

__all__ = ["PERTURBATIONS", "flip_rates", "ood_separation", "perturb"]


def _zoom(x: torch.Tensor, scale: float) -> torch.Tensor:
    import torch.nn.functional as F

    s = x.shape[-1]
    if scale > 1:  # zoom in: the centre crop of 1/scale, resized back
        c = round(s / scale)
        o = (s - c) // 2
        x = x[..., o : o + c, o : o + c]
        return (
            F.interpolate(x.float(), size=(s, s), mode="bilinear", antialias=True)
            .round()
            .clamp(0, 255)
            .to(torch.uint8)
        )
    small = F.interpolate(x.float(), scale_factor=scale, mode="bilinear", antialias=True)  # lower resolution
    return F.interpolate(small, size=(s, s), mode="bilinear").round().clamp(0, 255).to(torch.uint8)


def _tf(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    from torchvision.transforms.v2 import functional as TF

    return {
        "hflip": TF.horizontal_flip,
        "vflip": TF.vertical_flip,
        "rot90": lambda x: torch.rot90(x, 1, (-2, -1)),
        "brightness+30%": lambda x: TF.adjust_brightness(x, 1.3),
        "contrast-30%": lambda x: TF.adjust_contrast(x, 0.7),
        "saturation+30%": lambda x: TF.adjust_saturation(x, 1.3),
        "hue+0.05": lambda x: TF.adjust_hue(x, 0.05),
        "blur(sigma 1.5)": lambda x: TF.gaussian_blur(x, [7, 7], [1.5, 1.5]),
        "half resolution": lambda x: _zoom(x, 0.5),
        "zoom 1.25x": lambda x: _zoom(x, 1.25),
    }[name]


#: The stress report's perturbations of a uint8 batch, in report order.
PERTURBATIONS = (
    "hflip",
    "vflip",
    "rot90",
    "brightness+30%",
    "contrast-30%",
    "saturation+30%",
    "hue+0.05",
    "blur(sigma 1.5)",
    "half resolution",
    "zoom 1.25x",
)


def perturb(pixels: torch.Tensor, name: str) -> torch.Tensor:
    """``pixels`` (uint8 ``(N, 3, S, S)``) under perturbation ``name`` (one of :data:`PERTURBATIONS`)."""
    return _tf(name)(pixels)


def flip_rates(base: np.ndarray, perturbed: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of images whose top class changes under each perturbation (``base``: top class per image)."""
    return {k: float((v != base).mean()) for k, v in perturbed.items()}


def ood_separation(unc_in: np.ndarray, unc_out: np.ndarray) -> dict[str, float]:
    """AUROC of telling outside images (positive) from in-distribution ones by uncertainty, and the
    FPR at 95% TPR."""
    y = np.r_[np.zeros(len(unc_in), bool), np.ones(len(unc_out), bool)]
    s = np.r_[unc_in, unc_out]
    curve = roc(np.ones((1, len(y))), y, s)
    spec, _ = rates_at(curve, 0.95, "sensitivity")
    return {
        "auroc": float(auc(curve)[0]),
        "fpr_at_95_tpr": float(1 - spec[0]),
        "in_images": int(len(unc_in)),
        "ood_images": int(len(unc_out)),
    }
