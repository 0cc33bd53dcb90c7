"""Exact and near-duplicate images: candidates from a multi-index hash, confirmed by alignment.

1. Exact copies share a content hash.
2. Candidates: every image's whole-image pHash is looked up among all images' 56 window/symmetry codes
   (``fingerprints``) within ``radius`` bits, with faiss's multi-index hashing
   (``IndexBinaryMultiHash``: 4 tables of 16 bits, each bucket within ``radius // 4`` bit flips looked
   up, which finds every code within the radius). Nothing is compared all against all. The default
   radius 13 finds crops the 11 of fewer lookups misses (BENCHMARKS.md, "Data audit").
3. Coarse check (64 px grey thumbnails): the candidate's source, turned by the matched symmetry, is
   searched for the query at a few scales around the matched window's and at every offset; the best
   normalised cross-correlation (NCC, invariant to brightness and contrast) must reach
   ``coarse_threshold``, and the two images' mean-colour hue (also unchanged by brightness and
   contrast) must agree within ``max_hue_degrees``.
4. Fine check: both images are read again at 128 px and the high-pass detail (hairs, pigment network,
   vessels; what stays after removing a Gaussian blur) of the query's centre is correlated with the
   source at the coarse alignment, refined by a few pixels and percent of scale; it must reach
   ``threshold``. The centre only, because dermatoscopes draw the same dark frame and scale bar on
   every photograph. Different photographs of look-alike lesions agree at the coarse level (a dark
   blob on light skin) but not in their detail. Then the opponent-colour maps of the aligned centres
   must correlate (``min_colour_agreement``): a grey blob and a red one of one shape differ there. On
   the shared ISIC set every pair of different lesions stays below 0.56 in detail (BENCHMARKS.md,
   "Data audit").
5. Confirmed pairs and exact copies are joined into groups (union-find).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skinacc.audit.fingerprints import THUMB, WINDOWS, Fingerprints, dihedral

__all__ = ["DuplicatePair", "aligned_ncc", "find_duplicates", "union_groups"]

logger = logging.getLogger(__name__)

SCALES_AROUND = (-0.03, 0.0, 0.03)
FINE = 128  # side of the images compared in the fine check
CENTRE_MARGIN = 0.15  # the fine check leaves out this fraction of the query at each side
HIGH_PASS_SIGMA = 3.0  # the fine check correlates image minus its Gaussian blur of this sigma (px at 128)


@dataclass
class DuplicatePair:
    """Two images judged copies of one another."""

    a: int
    b: int
    kind: str  # "exact" | "near"
    hash_distance: int
    similarity: float  # high-pass detail correlation of the fine check (1.0 for exact copies)


@dataclass
class DuplicateResult:
    """Pairs, groups and how many candidates the hash index proposed."""

    pairs: list[DuplicatePair] = field(default_factory=list)
    groups: list[list[int]] = field(default_factory=list)  # groups of 2+ rows, largest first
    candidates: int = 0  # (query, source) image pairs the hash index proposed
    coarse_checked: int = 0
    fine_checked: int = 0


def union_groups(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Group ids (0..) of ``n`` items joined by ``pairs`` (union-find with path halving)."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    _, gid = np.unique(roots, return_inverse=True)
    return gid


def _resized(thumb: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(thumb).resize((width, height or width), Image.BILINEAR), dtype=np.float64
    )


def _ncc_search(
    q: np.ndarray, source: np.ndarray, near: tuple[int, int] | None = None, reach: int = 3
) -> tuple[float, tuple[int, int]]:
    """Best NCC of the zero-mean patch ``q`` over the offsets inside ``source`` (all, or within ``reach``
    pixels of ``near``); returns the score and its (y, x) offset."""
    from numpy.lib.stride_tricks import sliding_window_view

    nq = np.sqrt((q * q).sum())
    win = sliding_window_view(source, q.shape)
    y0 = x0 = 0
    if near is not None:
        y0, x0 = max(0, near[0] - reach), max(0, near[1] - reach)
        win = win[y0 : near[0] + reach + 1, x0 : near[1] + reach + 1]
    if win.size == 0:
        return -1.0, (0, 0)
    wc = win - win.mean(axis=(2, 3), keepdims=True)
    den = np.sqrt((wc * wc).sum(axis=(2, 3))) * nq
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-9, np.einsum("ijkl,kl->ij", wc, q) / den, 0.0)
    y, x = np.unravel_index(int(r.argmax()), r.shape)
    return float(r.max()), (int(y) + y0, int(x) + x0)


def aligned_ncc(query: np.ndarray, source: np.ndarray, scales) -> tuple[float, tuple[int, int, int, int]]:
    """Best NCC of ``query`` (a thumbnail) shrunk to each of ``scales`` and slid over every offset of
    ``source`` (a thumbnail in the same orientation): how well the query is a (cropped, resized,
    re-encoded, brightness/contrast-changed) copy of the source.

    Returns:
        The score and the alignment ``(width, height, y, x)`` in ``source`` pixels.
    """
    src = source.astype(np.float64)
    best, where = -1.0, (THUMB, THUMB, 0, 0)
    for s in scales:
        m = round(THUMB * s)
        q = _resized(query, m) if m != THUMB else query.astype(np.float64)
        score, (y, x) = _ncc_search(q - q.mean(), src)
        if score > best:
            best, where = score, (m, m, y, x)
    return best, where


def _high_pass(img: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return img - gaussian_filter(img, HIGH_PASS_SIGMA)


def fine_ncc(
    query: np.ndarray, source: np.ndarray, coarse: tuple[int, int, int, int]
) -> tuple[float, tuple[int, int, int, int]]:
    """High-pass NCC of ``query``'s centre and ``source`` (grey, FINE x FINE, source already turned) at the
    coarse alignment (in THUMB pixels), refined by up to 3% of scale and of aspect and a few px of offset:
    the offset at the coarse scale, then the scale and the aspect near that position, then the offset.

    Returns:
        The best score and its alignment in FINE pixels: the query's size ``(width, height)`` and the
        offset ``(y, x)`` of its centre (the query less ``CENTRE_MARGIN`` at each side) in ``source``.
    """
    f = FINE / THUMB
    w0, h0, y0, x0 = (round(v * f) for v in coarse)
    w0, h0 = min(FINE, w0), min(FINE, h0)
    src = _high_pass(source.astype(np.float64))

    def at(w: int, h: int, oy: int, ox: int, reach: int) -> tuple[float, int, int]:
        # Only the query's central part: dermatoscopes draw the same dark circular frame and scale bar
        # on every photograph, and at the border their edges would dominate the detail.
        my, mx = round(CENTRE_MARGIN * h), round(CENTRE_MARGIN * w)
        q = _high_pass(_resized(query, w, h))[my : h - my, mx : w - mx]
        score, (y, x) = _ncc_search(q - q.mean(), src, (oy + my, ox + mx), reach)
        return score, y - my, x - mx  # back to the whole query's origin

    best, oy, ox = at(w0, h0, y0, x0, 3)
    bw, bh = w0, h0
    step = max(1, round(0.015 * FINE))
    # Coordinate search: both sides together (a uniform resize), then the height alone (an aspect change).
    for vary in ("both", "height"):
        cw, ch = bw, bh
        for d in (-2 * step, -step, step, 2 * step):
            w, h = (min(FINE, cw + d), min(FINE, ch + d)) if vary == "both" else (cw, min(FINE, ch + d))
            if w < FINE * 0.8 or h < FINE * 0.8 or (w, h) == (bw, bh):
                continue
            score, y, x = at(w, h, oy, ox, 1)
            if score > best:
                best, bw, bh, oy, ox = score, w, h, y, x
    if (bw, bh) != (w0, h0):
        best, oy, ox = at(bw, bh, oy, ox, 2)
    my, mx = round(CENTRE_MARGIN * bh), round(CENTRE_MARGIN * bw)
    return best, (bw, bh, oy + my, ox + mx)


def colour_agreement(query: np.ndarray, source: np.ndarray, where: tuple[int, int, int, int]) -> float:
    """Correlation of the opponent-colour maps (R - G and (R + G) / 2 - B) of two RGB images aligned by
    :func:`fine_ncc`, over the query's centre. Brightness changes and contrast changes (a blend with grey)
    scale both maps by one factor, which the correlation ignores; a grey blob and a red one of the same
    shape, which grey detail cannot tell apart, correlate negatively (on the injected test set: copies
    >= 0.89, look-alike synthetic lesions <= 0.92 only when their detail already fails)."""
    w, h, y, x = where
    my, mx = round(CENTRE_MARGIN * h), round(CENTRE_MARGIN * w)
    q = np.stack([_resized(np.ascontiguousarray(query[..., c]), w, h) for c in range(3)], -1)
    q = q[my : h - my, mx : w - mx]
    s = source[y : y + q.shape[0], x : x + q.shape[1]].astype(np.float64)

    def opponent(img: np.ndarray) -> np.ndarray:
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        o = np.stack([r - g, (r + g) / 2 - b])
        return (o - o.mean(axis=(1, 2), keepdims=True)).ravel()

    oq, os_ = opponent(q), opponent(s)
    den = float(np.linalg.norm(oq) * np.linalg.norm(os_))
    return float(oq @ os_) / den if den > 1e-9 else 1.0  # both grey: nothing to disagree on


def _turned(rgb: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.stack([dihedral(rgb[..., c], k) for c in range(3)], -1))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def _fine_image(src: Any) -> np.ndarray:
    from PIL import Image

    from skinacc.data.images import load_rgb

    return np.asarray(load_rgb(src, 2 * FINE).resize((FINE, FINE), Image.BILINEAR), dtype=np.uint8)


def find_duplicates(
    fps: Fingerprints,
    sources: list[Any],
    radius: int = 13,
    threshold: float = 0.6,
    coarse_threshold: float = 0.85,
    max_hue_degrees: float = 6.0,
    min_colour_agreement: float = 0.5,
    embeddings: np.ndarray | None = None,
    min_cosine: float = 0.9,
    workers: int = 1,
) -> DuplicateResult:
    """Exact and near-duplicate pairs and groups among fingerprinted images.

    Args:
        fps: Fingerprints (unreadable rows are ignored).
        sources: The images ``fps`` was computed from (paths or ``datasets`` image dicts), read again
            for the fine check of the candidates that pass the coarse one.
        radius: Hamming radius (bits of 63) of the hash candidates, at most 15.
        threshold: High-pass detail correlation (fine check) a duplicate needs.
        coarse_threshold: Grey correlation of the 64 px thumbnails a candidate needs to be checked finely.
        max_hue_degrees: Largest difference of mean-colour hue between duplicates.
        min_colour_agreement: Smallest :func:`colour_agreement` of aligned duplicates (fine check).
        embeddings: Optional L2-normalised features per row (e.g. a timm model's); a near pair then
            also needs cosine similarity ``>= min_cosine``.
        min_cosine: See ``embeddings``.
        workers: Processes that check the candidates (forked; each reads the images it checks).

    Returns:
        A :class:`DuplicateResult` (row indices into ``fps``).

    Raises:
        ImportError: faiss is not installed (``pip install 'skinacc[audit]'``).
        ValueError: ``radius`` outside [0, 15].
    """
    if not 0 <= radius <= 15:
        raise ValueError(f"radius={radius}: must be in [0, 15] (the multi-index hash is exact up to 15 bits)")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it loads is noise here
    try:
        import faiss
    except ImportError as e:
        raise ImportError("the data audit needs faiss: pip install 'skinacc[audit]' (faiss-cpu)") from e
    rows = np.flatnonzero(fps.ok)
    res = DuplicateResult()
    best: dict[tuple[int, int], DuplicatePair] = {}
    # 1. exact copies
    by_sha: dict[str, list[int]] = {}
    for r in rows:
        by_sha.setdefault(fps.sha1[r], []).append(int(r))
    for members in by_sha.values():
        for b in members[1:]:
            best[(members[0], b)] = DuplicatePair(members[0], b, "exact", 0, 1.0)
    # 2. candidates: one representative per distinct content (exact copies add nothing new)
    reps = np.array([m[0] for m in by_sha.values()], dtype=np.int64)
    candidates: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = {}
    if len(reps) > 1:
        n_codes = len(WINDOWS) * 8
        entries = fps.codes[reps].reshape(-1)  # rep-major, then window, then symmetry
        index = faiss.IndexBinaryMultiHash(64, 4, 16)
        # 4 tables of 16 bits: a code within r bits differs in at most floor(r / 4) bits in one of them,
        # so looking up every bucket within that many flips finds all of them (exact search)
        index.nflip = radius // 4
        index.add(np.ascontiguousarray(entries.astype(">u8").view(np.uint8).reshape(-1, 8)))
        queries = np.ascontiguousarray(fps.codes[reps, 0, 0].astype(">u8").view(np.uint8).reshape(-1, 8))
        lims, dist, ids = index.range_search(queries, radius + 1)  # faiss: strictly below the radius
        for qi in range(len(reps)):
            hits: dict[tuple[int, int, int], int] = {}
            for d, e in zip(dist[lims[qi] : lims[qi + 1]], ids[lims[qi] : lims[qi + 1]]):
                src = int(e) // n_codes
                if src == qi:
                    continue
                w, sym = divmod(int(e) % n_codes, 8)
                key = (src, w, sym)
                if key not in hits or d < hits[key]:
                    hits[key] = int(d)
            res.candidates += len({k[0] for k in hits})
            for (src, w, sym), d in hits.items():
                a, b = int(reps[src]), int(reps[qi])  # b looks like a copy of a
                hue_gap = abs(fps.hue[a] - fps.hue[b]) % (2 * np.pi)
                if np.degrees(min(hue_gap, 2 * np.pi - hue_gap)) > max_hue_degrees:
                    continue
                candidates.setdefault((min(a, b), max(a, b)), []).append((d, a, b, w, sym))
    # 3-4. coarse and fine checks, pair by pair (a pair's alignments in order of hash distance, until
    # one confirms), in ``workers`` forked processes that share the fingerprints copy-on-write
    todo = [sorted(c) for _, c in sorted(candidates.items())]
    global _CHECK
    _CHECK = (fps, sources, threshold, coarse_threshold, min_colour_agreement)
    try:
        size = max(1, min(256, -(-len(todo) // (4 * workers))))  # a few chunks per process, at most 256 pairs
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        if workers > 1 and len(chunks) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=mp.get_context("fork")) as ex:
                results = list(ex.map(_check_chunk, chunks))
        else:  # one chunk: each image is read for the fine check once, not once per chunk
            results = [_check_chunk(todo)]
    finally:
        _CHECK = None
    for found, coarse_n, fine_n in results:
        res.coarse_checked += coarse_n
        res.fine_checked += fine_n
        for d, a, b, sim in found:
            pair = (min(a, b), max(a, b))
            if embeddings is None or float(embeddings[a] @ embeddings[b]) >= min_cosine:
                best[pair] = DuplicatePair(pair[0], pair[1], "near", d, sim)
    # exact copies of a near-duplicate are near-duplicates of it too: union-find joins them
    res.pairs = sorted(best.values(), key=lambda p: (p.a, p.b))
    gid = union_groups(len(fps), [(p.a, p.b) for p in res.pairs])
    groups: dict[int, list[int]] = {}
    for r in rows:
        groups.setdefault(int(gid[r]), []).append(int(r))
    res.groups = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    return res


# What the checking processes need, set before they fork (a fingerprint set is large: not pickled).
_CHECK: tuple | None = None


def _check_chunk(pairs: list[list[tuple[int, int, int, int, int]]]) -> tuple[list, int, int]:
    """Coarse and fine checks of a chunk of candidate pairs; returns the confirmed ``(d, a, b, similarity)``
    and how many coarse and fine checks ran."""
    fps, sources, threshold, coarse_threshold, min_colour = _CHECK
    fine: dict[int, np.ndarray] = {}  # 128 px images read for the fine check, once per chunk

    def fine_image(i: int) -> np.ndarray:
        if i not in fine:
            fine[i] = _fine_image(sources[i])
        return fine[i]

    found, n_coarse, n_fine = [], 0, 0
    for alignments in pairs:
        for d, a, b, w, sym in alignments:
            width = WINDOWS[w][2] - WINDOWS[w][0]
            scales = sorted({min(1.0, round(width + s, 3)) for s in SCALES_AROUND if width + s >= 0.8})
            source = np.ascontiguousarray(dihedral(fps.thumbs[a], sym))
            coarse, where = aligned_ncc(fps.thumbs[b], source, scales)
            n_coarse += 1
            if coarse < coarse_threshold:
                continue
            n_fine += 1
            src_rgb = _turned(fine_image(a), sym)
            sim, at = fine_ncc(_grey(fine_image(b)), _grey(src_rgb), where)
            if sim >= threshold and colour_agreement(fine_image(b), src_rgb, at) >= min_colour:
                found.append((d, a, b, sim))
                break
    return found, n_coarse, n_fine
