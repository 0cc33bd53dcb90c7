"""Inference over image files: collect inputs, decode them a few batches ahead, predict top-k labels.

Preprocessing is the evaluation transform of training (resize, centre crop, normalise with the
model's own data config), so predictions match what evaluation measured.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from skinacc.console import progress_bar
from skinacc.data.data_config import DataConfig
from skinacc.data.images import IMAGE_EXTENSIONS
from skinacc.data.transforms import ImageTransform
from skinacc.predictor import Predictor, set_memory_format

if TYPE_CHECKING:
    from skinacc.clinical.decision import DecisionRules

__all__ = [
    "collect_images",
    "iter_predictions",
    "iter_probs",
    "predict_images",
    "preprocess",
]


def collect_images(inputs: Sequence[str]) -> list[str]:
    """Expand files, folders (recursively) and glob patterns into a sorted, de-duplicated image list.

    Raises:
        FileNotFoundError: An input matches nothing, or nothing at all is an image.
    """
    found: list[str] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found += [
                str(f)
                for f in sorted(p.rglob("*"))
                if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
            ]
        elif p.is_file():
            found.append(str(p))
        else:
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            if not matches:
                raise FileNotFoundError(f"--inputs {item!r}: no such file, folder or matching glob")
            found += [m for m in matches if Path(m).suffix.lower() in IMAGE_EXTENSIONS]
    found = list(dict.fromkeys(found))
    if not found:
        raise FileNotFoundError(
            f"--inputs {list(inputs)}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return found


def preprocess(files: Sequence[str], cfg: DataConfig) -> tuple[torch.Tensor, dict[int, str]]:
    """uint8 (N, 3, S, S) batch of the files that decode, and ``{index: reason}`` for those that do not
    (corrupt, truncated, not an image, a decompression bomb)."""
    t = ImageTransform(cfg, train=False)
    out = t({"image": list(files), "label": [0] * len(files), "sample_id": list(range(len(files)))})
    bad = {i: e for i, e in enumerate(out["error"]) if e is not None}
    good = [x for x in out["pixel_values"] if x is not None]
    size = cfg.image_size
    return (torch.stack(good) if good else torch.empty(0, 3, size, size, dtype=torch.uint8)), bad


def _preprocess_job(job: tuple[list[str], DataConfig]) -> tuple[torch.Tensor, dict[int, str]]:
    """:func:`preprocess` in a decoding worker (the batch comes back through shared memory)."""
    files, cfg = job
    return preprocess(files, cfg)


@torch.no_grad()
def iter_predictions(
    model: nn.Module,
    files: Iterable[str],
    label_names: Sequence[str],
    cfg: DataConfig,
    batch_size: int = 64,
    top_k: int = 3,
    device: str | torch.device = "cpu",
    progress: bool = True,
    tta: str = "none",
    temperature: float = 1.0,
    workers: int = 0,
    total: int | None = None,
    channels_last: bool = True,
    decision: DecisionRules | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Top-k predictions batch by batch, for inputs of any size: files are read as they come, decoded by
    ``workers`` processes a few batches ahead of the model, and nothing is kept once yielded.

    Args:
        files: Image paths (any iterable; a generator is read lazily).
        tta: Test-time augmentation (``none``, ``flip``, ``dihedral``; see :mod:`skinacc.calibration`).
        temperature: Softmax temperature (a calibrated model's, from ``hub.load_model``).
        workers: Decoding processes (0: decode in this process between forward passes).
        total: Number of files, for the progress bar (optional).
        channels_last: Run the model and batches in channels-last memory format (the same arithmetic;
            faster convolutions on CPU and on tensor cores); ``False``: the contiguous (NCHW) layout.
            Converts ``model`` in place either way.
        decision: The model's stored decision rules (:class:`skinacc.clinical.DecisionRules`): each result
            then carries ``decision`` (per operating point P(group) and "refer"/"no referral suggested",
            and ``uncertain`` with an abstention rule).

    Yields:
        For every batch, one dict per file: ``path``, ``top_k`` (list of ``{"label", "prob"}``) and
        ``decision`` (with rules), or ``error`` if it could not be decoded.
    """
    device = torch.device(device)
    model = set_memory_format(model.to(device), channels_last).eval()
    predictor = Predictor(
        model, cfg, tta=tta, temperature=temperature, device=device, channels_last=channels_last
    )
    k = min(top_k, len(label_names))
    bar = progress_bar(total=total, desc="predict", show=progress, unit="img", dynamic_ncols=True)
    for chunk, probs, disagreement, bad in iter_probs(predictor, files, batch_size, workers):
        if len(probs):
            pv, pi = torch.from_numpy(probs).topk(k, dim=-1)
        rules = decision.decide(probs, list(label_names), disagreement) if decision and len(probs) else None
        row = 0
        out: list[dict[str, Any]] = []
        for i, f in enumerate(chunk):
            if i in bad:
                out.append({"path": f, "error": f"could not decode image ({bad[i]})"})
                continue
            r: dict[str, Any] = {
                "path": f,
                "top_k": [{"label": label_names[int(j)], "prob": float(v)} for v, j in zip(pv[row], pi[row])],
            }
            if rules is not None:
                r["decision"] = rules[row]
            out.append(r)
            row += 1
        bar.update(len(chunk))
        yield out
    bar.close()


def iter_probs(
    predictor: Predictor, files: Iterable[str], batch_size: int = 64, workers: int = 0
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray | None, dict[int, str]]]:
    """Probabilities of image files batch by batch, decoded by ``workers`` processes a few batches ahead.

    Yields:
        ``(files, probs (n, C), disagreement (n,) or None, bad)``: the chunk's files, the probabilities of
        those that decoded (in order), the share of TTA views disagreeing with the average (None without
        TTA), and ``{index in chunk: reason}`` for those that did not.
    """
    from skinacc.data.pool import ordered_map

    def chunks() -> Iterator[tuple[list[str], DataConfig]]:
        chunk: list[str] = []
        for f in files:
            chunk.append(f)
            if len(chunk) == batch_size:
                yield chunk, predictor.data_cfg
                chunk = []
        if chunk:
            yield chunk, predictor.data_cfg

    # The chunk's file names travel beside the job: the pool returns results in order.
    queue: list[list[str]] = []

    def jobs():
        for c in chunks():
            queue.append(c[0])
            yield c

    n_classes = None
    for x, bad in ordered_map(_preprocess_job, jobs(), workers, prefetch=2):
        chunk = queue.pop(0)
        if len(x):
            with torch.no_grad():
                z = predictor.logits(x).cpu()
            probs = predictor.probs(z)
            n_classes = probs.shape[1]
            yield chunk, probs, predictor.disagreement(z), bad
        else:
            yield chunk, np.zeros((0, n_classes or 0)), None, bad


def predict_images(
    model: nn.Module,
    files: Sequence[str],
    label_names: Sequence[str],
    cfg: DataConfig,
    batch_size: int = 64,
    top_k: int = 3,
    device: str | torch.device = "cpu",
    progress: bool = True,
    tta: str = "none",
    temperature: float = 1.0,
    workers: int = 0,
    channels_last: bool = True,
) -> list[dict[str, Any]]:
    """Top-k predictions for every file, as one list (see :func:`iter_predictions` for large inputs).

    Returns:
        One dict per file: ``path``, ``top_k`` (list of ``{"label", "prob"}``), or ``error`` if it
        could not be decoded.
    """
    it = iter_predictions(
        model, files, label_names, cfg, batch_size, top_k, device, progress, tta, temperature, workers,
        total=len(files), channels_last=channels_last,
    )  # fmt: skip
    return [r for batch in it for r in batch]
