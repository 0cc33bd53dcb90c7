"""From logits to probabilities a user can read: test-time augmentation and temperature scaling.

Test-time augmentation (TTA) runs the model on symmetric copies of each image and averages the
probabilities: ``flip`` (the image and its horizontal mirror) or ``dihedral`` (the 8 flips and
quarter turns; a dermoscopic image has no "up", so all 8 are equally valid views).

Temperature scaling (Guo et al., 2017) divides the logits by one number ``T`` fitted on held-out data
to minimise the negative log-likelihood; it changes confidence, never the ranking of classes, so
accuracy is untouched while the expected calibration error (ECE) usually drops. The temperature is
fitted on exactly the probabilities that will be reported: each view's logits are divided by ``T``
before the views are averaged.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "TTA_MODES",
    "TTA_VIEWS",
    "calibrate",
    "fit_temperature",
    "nll",
    "probs_from_logits",
    "tta_views",
    "view_disagreement_of",
]

#: Number of views each TTA mode averages.
TTA_VIEWS = {"none": 1, "flip": 2, "dihedral": 8}
TTA_MODES = tuple(TTA_VIEWS)


def tta_views(x: torch.Tensor, mode: str = "none") -> list[torch.Tensor]:
    """The views of a batch ``(N, C, H, W)`` that ``mode`` averages over (the first is the batch itself).

    Raises:
        ValueError: Unknown ``mode``, or ``dihedral`` on non-square images.
    """
    if mode not in TTA_VIEWS:
        raise ValueError(f"--tta={mode!r}: must be one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return [x]
    mirror = x.flip(-1)
    if mode == "flip":
        return [x, mirror]
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"--tta=dihedral needs square inputs, got {tuple(x.shape[-2:])}")
    return [torch.rot90(v, k, dims=(-2, -1)) for v in (x, mirror) for k in range(4)]


def probs_from_logits(logits: np.ndarray | torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits ``(N, C)`` or per-view logits ``(N, V, C)``: softmax of each view
    at ``temperature``, averaged over views. Computed in float64."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if z.ndim == 2:
        z = z[:, None, :]
    return (z / temperature).softmax(-1).mean(1).numpy()


def view_disagreement_of(logits: np.ndarray | torch.Tensor, temperature: float = 1.0) -> np.ndarray | None:
    """Per image, the share of test-time-augmentation views ``(N, V, C)`` whose top class (softmax at
    ``temperature``) differs from the top class of the views' average; None with one view."""
    from skinacc.clinical.selective import view_disagreement

    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if z.ndim != 3 or z.shape[1] < 2:
        return None
    return view_disagreement((z / temperature).softmax(-1).numpy())


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under :func:`probs_from_logits`."""
    p = probs_from_logits(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature minimising the NLL of ``labels`` (logits ``(N, C)`` or per-view ``(N, V, C)``).

    A one-dimensional bounded search over ``log T`` (golden section, 60 steps: far below the
    resolution that matters). The NLL of a mixture of tempered softmaxes need not be convex in ``T``,
    so a grid pass picks the bracket first.

    Raises:
        ValueError: No samples.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if z.ndim == 2:
        z = z[:, None, :]
    idx = torch.arange(len(labels))
    y = torch.as_tensor(labels)

    def loss(log_t: float) -> float:
        p = (z / float(np.exp(log_t))).softmax(-1).mean(1)[idx, y]
        return float(-p.clamp_min(1e-12).log().mean())

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    grid = np.linspace(lo, hi, 41)
    i = int(np.argmin([loss(g) for g in grid]))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    phi = (np.sqrt(5) - 1) / 2
    c, d = b - phi * (b - a), a + phi * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - phi * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + phi * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2))


def calibrate(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Fit a temperature on held-out logits and say what it changed.

    Returns:
        ``temperature`` and, before and after it, the ``ece`` (15 bins) and ``nll``.
    """
    from skinacc.metrics.functional import expected_calibration_error

    t = fit_temperature(logits, labels)
    out = {"temperature": t}
    for tag, temp in (("before", 1.0), ("after", t)):
        out[f"ece_{tag}"] = expected_calibration_error(labels, probs_from_logits(logits, temp))
        out[f"nll_{tag}"] = nll(logits, labels, temp)
    return out
