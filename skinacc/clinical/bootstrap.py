"""Bootstrap confidence intervals that resample whole lesions (or patients), vectorised.

One lesion photographed five times is one observation, not five: resampling images treats the copies as
independent and understates every metric's variance. :func:`group_weights` draws whole groups with
replacement (images when there are no groups) and turns each draw into per-image weights; the metrics
of :mod:`skinacc.clinical.weighted` take a block of such weightings at once, so 2,000 resamples of a few
hundred images take about a second.

:func:`bootstrap` gives percentile intervals of any set of metrics; :func:`paired_bootstrap` the
difference between two models scored on the same images under the same resamples (the pairing removes
the images' shared difficulty from the interval).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "bootstrap", "group_ids", "group_weights", "paired_bootstrap"]

#: ``(weights (B, n)) -> {name: values (B,) or (B, k)}``: the metrics under each weighting.
MetricFn = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def group_ids(groups, n: int) -> np.ndarray:
    """Integer id per image of its group (each image its own group when ``groups`` is None); an empty or
    missing group name also stands alone rather than pooling every unnamed image into one group."""
    if groups is None:
        return np.arange(n)
    names = np.asarray(groups, dtype=object)
    if len(names) != n:
        raise ValueError(f"{len(names)} group names for {n} images")
    blank = np.array([g is None or (isinstance(g, float) and np.isnan(g)) or str(g) == "" for g in names])
    names = np.where(blank, np.array([f"\0image{i}" for i in range(n)], dtype=object), names.astype(str))
    return np.unique(names.astype(str), return_inverse=True)[1]


def group_weights(
    gid: np.ndarray, n_boot: int, seed: int = 0, chunk_elements: int = 4_000_000
) -> Iterator[np.ndarray]:
    """Resamples as per-image weights, in blocks ``(b, n)`` of at most ``chunk_elements`` entries.

    Each resample draws as many groups as there are, with replacement; an image's weight is how often its
    group was drawn. Seeded: the same ``(gid, n_boot, seed)`` gives the same resamples, so two models
    scored with one seed are paired.
    """
    rng = np.random.default_rng(seed)
    g = int(gid.max()) + 1 if len(gid) else 0
    per = max(1, chunk_elements // max(1, len(gid)))
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        counts = rng.multinomial(g, np.full(g, 1.0 / g), size=b).astype(np.float64)
        yield counts[:, gid]
        done += b


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2
    with warnings.catch_warnings():  # a metric undefined in every resample stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, [alpha, 1 - alpha], axis=0)
    return lo, hi


def _collect(fn: MetricFn, gid: np.ndarray, n_boot: int, seed: int) -> tuple[dict, dict]:
    point = {k: np.asarray(v)[0] for k, v in fn(np.ones((1, len(gid)))).items()}
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    for w in group_weights(gid, n_boot, seed):
        for k, v in fn(w).items():
            draws[k].append(np.asarray(v))
    return point, {k: np.concatenate(v) for k, v in draws.items()}


def bootstrap(
    fn: MetricFn, gid: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Interval | list[Interval]]:
    """Point estimates of ``fn``'s metrics with percentile intervals over group resamples.

    Args:
        fn: The metrics as a function of weightings (:mod:`skinacc.clinical.weighted`).
        gid: Group id per image (:func:`group_ids`).
        n_boot: Resamples (0: point estimates with NaN intervals).
        level: Coverage of the intervals.
        seed: Seed of the resamples.

    Returns:
        ``{name: Interval}``, or a list of intervals for a metric with one value per class.
    """
    if n_boot <= 0:
        point = {k: np.asarray(v)[0] for k, v in fn(np.ones((1, len(gid)))).items()}
        nan = {k: np.full(np.shape(v), np.nan) for k, v in point.items()}
        return _intervals(point, nan, nan)
    point, draws = _collect(fn, gid, n_boot, seed)
    lo, hi = {}, {}
    for k, v in draws.items():
        lo[k], hi[k] = _percentiles(v, level)
    return _intervals(point, lo, hi)


def _intervals(point, lo, hi) -> dict[str, Interval | list[Interval]]:
    out: dict[str, Interval | list[Interval]] = {}
    for k, v in point.items():
        if np.ndim(v):
            out[k] = [Interval(float(a), float(b), float(c)) for a, b, c in zip(v, lo[k], hi[k])]
        else:
            out[k] = Interval(float(v), float(lo[k]), float(hi[k]))
    return out


def paired_bootstrap(
    fn_a: MetricFn, fn_b: MetricFn, gid: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Difference ``a - b`` of two models' scalar metrics on the same images, under the same resamples.

    Returns:
        Per metric: ``a``, ``b``, ``difference`` with ``ci_low``/``ci_high``, and ``share_above_zero``
        (the share of resamples where a beats b).
    """
    pa, pb = fn_a(np.ones((1, len(gid)))), fn_b(np.ones((1, len(gid))))
    names = [k for k in pa if k in pb and np.ndim(pa[k]) == 1]
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for w in group_weights(gid, n_boot, seed):
        a, b = fn_a(w), fn_b(w)
        for k in names:
            diffs[k].append(np.asarray(a[k]) - np.asarray(b[k]))
    out = {}
    for k in names:
        d = np.concatenate(diffs[k]) if diffs[k] else np.full(1, np.nan)
        lo, hi = _percentiles(d, level)
        with np.errstate(invalid="ignore"):
            above = float(np.mean(d[~np.isnan(d)] > 0)) if (~np.isnan(d)).any() else float("nan")
        av, bv = float(pa[k][0]), float(pb[k][0])
        out[k] = {
            "a": av,
            "b": bv,
            "difference": av - bv,
            "ci_low": float(lo),
            "ci_high": float(hi),
            "share_above_zero": above,
        }
    return out
