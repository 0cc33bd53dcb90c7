"""Seeded, stratified and group-aware splitting.

The seed split 70/30 train/test, then 10% of train for validation, stratified by class. When a group
column is given (e.g. a lesion id: several photographs of one lesion), whole groups are assigned to a
split so that no group appears in two splits; stratification is then by each group's majority class,
filling each class's share by image count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cv_split", "split_indices", "stratified_split"]


def stratified_split(
    labels: Sequence[int],
    fraction: float,
    seed: int,
    groups: Sequence | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, held_out)`` with ``fraction`` of each class held out.

    Args:
        labels: Class id of each item.
        fraction: Share of each class to hold out, in (0, 1).
        seed: RNG seed; the same inputs and seed always give the same split.
        groups: Optional group key per item; a group is never split.

    Returns:
        Two sorted index arrays that partition ``range(len(labels))``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction={fraction}: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    if groups is None:
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            k = int(round(fraction * len(idx)))
            if len(idx) >= 2:  # keep at least one item of each class on both sides
                k = min(max(k, 1), len(idx) - 1)
            held.append(idx[:k])
    else:
        _, gid = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        n_groups = gid.max() + 1 if n else 0
        # Majority label of each group decides which class quota it fills.
        counts = np.zeros((n_groups, labels.max() + 1 if n else 1), dtype=np.int64)
        np.add.at(counts, (gid, labels), 1)
        g_label = counts.argmax(1)
        g_size = counts.sum(1)
        for c in np.unique(g_label):
            g = np.flatnonzero(g_label == c)
            rng.shuffle(g)
            target = fraction * g_size[g].sum()
            cum = np.cumsum(g_size[g])
            # Smallest prefix of shuffled groups whose image count reaches the target share.
            k = int(np.searchsorted(cum, target - 0.5 * g_size[g].mean())) + 1 if len(g) else 0
            if len(g) >= 2:
                k = min(max(k, 1), len(g) - 1)
            else:
                k = 0
            chosen = np.zeros(n_groups, dtype=bool)
            chosen[g[:k]] = True
            held.append(np.flatnonzero(chosen[gid]))
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def split_indices(
    labels: Sequence[int],
    test_size: float = 0.3,
    val_size: float = 0.1,
    seed: int = 42,
    groups: Sequence | None = None,
) -> dict[str, np.ndarray]:
    """The seed's split: ``test_size`` of all for test, then ``val_size`` of the rest for validation.

    Returns:
        ``{"train": idx, "validation": idx, "test": idx}``; ``validation`` is empty if ``val_size`` is 0.
    """
    labels = np.asarray(labels)
    if test_size > 0:
        train, test = stratified_split(labels, test_size, seed, groups)
    else:  # a final model on every image (--final_fit --test_size 0)
        train, test = np.arange(len(labels)), np.array([], dtype=np.int64)
    out = {"train": train, "validation": np.array([], dtype=np.int64), "test": test}
    if val_size > 0:
        sub_groups = None if groups is None else np.asarray(groups, dtype=object)[train]
        keep, val = stratified_split(labels[train], val_size, seed + 1, sub_groups)
        out["train"], out["validation"] = train[keep], train[val]
    return out


def cv_split(
    labels: Sequence[int],
    test_size: float,
    folds: int,
    fold: int,
    seed: int = 42,
    groups: Sequence | None = None,
) -> dict[str, np.ndarray]:
    """Fold ``fold`` of a K-fold cross-validation: ``test_size`` held out first (as :func:`split_indices`
    does, so the test split is the same one), the rest cut into ``folds`` folds by scikit-learn's
    ``StratifiedGroupKFold`` (stratified by class, whole groups per fold, shuffled with ``seed``).

    Returns:
        ``{"train": idx, "validation": the held-out fold, "test": idx}``.

    Raises:
        ValueError: Fewer groups than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    if test_size > 0:
        rest, test = stratified_split(labels, test_size, seed, groups)
    else:
        rest, test = np.arange(len(labels)), np.array([], dtype=np.int64)
    g = np.arange(len(rest)) if groups is None else np.asarray(groups, dtype=object)[rest].astype(str)
    if len(np.unique(g)) < folds:
        raise ValueError(f"--cv_folds={folds}: only {len(np.unique(g))} groups outside the test split")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, val = list(splitter.split(np.zeros(len(rest)), labels[rest], g))[fold]
    return {"train": rest[np.sort(train)], "validation": rest[np.sort(val)], "test": test}
