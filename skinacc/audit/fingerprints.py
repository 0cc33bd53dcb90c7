"""Per-image fingerprints for the data audit: a content hash, a small grey thumbnail, and perceptual
hashes made invariant to the 8 flips/rotations and tolerant to crops.

The perceptual hash is the classic DCT hash (pHash: the 8x8 lowest frequencies of a 32x32 grey
image, each bit "above the median"). Flips and quarter turns of an image only flip the signs of DCT
coefficients and transpose the block, so the hashes of all 8 symmetries come exactly from one DCT
(``dihedral_hashes``). Crops up to 10% move what pHash sees; each image is therefore also hashed over
a few windows (centred 94% and 88%, and the four 90% corners), so a cropped copy lands near one of
its source's windows. That gives 7 windows x 8 symmetries = 56 codes per image, searched by a
multi-index hash (``skinacc.audit.duplicates``).

pHash alone separates copies from different photographs poorly on dermoscopy (every image is a
skin-toned field with a central blob), so each candidate pair is confirmed on the 64x64 grey
thumbnails kept here (normalised cross-correlation after alignment; see ``duplicates``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "THUMB",
    "WINDOWS",
    "Fingerprints",
    "dihedral",
    "dihedral_hashes",
    "fingerprint",
    "fingerprint_all",
]

logger = logging.getLogger(__name__)

THUMB = 64  # side of the grey thumbnail kept for confirmation
HASH_SIDE = 32  # pHash: DCT of a 32x32 grey image, 8x8 lowest frequencies
#: Windows (x0, y0, x1, y1 as fractions) each image is hashed over: whole, centred 94% and 88%, and
#: the four 90% corners. A copy cropped by up to 10% is close to one of its source's windows.
WINDOWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    (0.03, 0.03, 0.97, 0.97),
    (0.06, 0.06, 0.94, 0.94),
    (0.1, 0.1, 1.0, 1.0),
    (0.0, 0.1, 0.9, 1.0),
    (0.1, 0.0, 1.0, 0.9),
    (0.0, 0.0, 0.9, 0.9),
)
N_SYM = 8


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of a square array: transpose (k >= 4), flip rows (k & 2), flip
    columns (k & 1), in that order (the same numbering as :func:`dihedral_hashes`)."""
    m = x.T if k >= 4 else x
    if k & 2:
        m = m[::-1]
    if k & 1:
        m = m[:, ::-1]
    return m


def dihedral_hashes(block: np.ndarray) -> np.ndarray:
    """pHash bits of the 8 symmetries of an image, from the low-frequency block of its 2-D DCT-II.

    Flipping columns multiplies coefficient (u, v) by (-1)^v, flipping rows by (-1)^u, transposing
    transposes the block, so no symmetry needs its own DCT. The DC term is left out (63 bits), each
    bit says "above the block's median".

    Returns:
        ``(8, 63)`` booleans, in :func:`dihedral` order.
    """
    k = block.shape[0]
    sign = np.array([1.0 if u % 2 == 0 else -1.0 for u in range(k)])
    out = np.empty((N_SYM, k * k - 1), dtype=bool)
    for s in range(N_SYM):
        m = block.T if s >= 4 else block
        if s & 2:
            m = m * sign[:, None]
        if s & 1:
            m = m * sign[None, :]
        flat = m.reshape(-1)[1:]
        out[s] = flat > np.median(flat)
    return out


def _pack(bits: np.ndarray) -> np.ndarray:
    """63 (or 64) booleans per row -> one uint64 per row (bit 63 is 0 for 63-bit codes)."""
    padded = np.zeros((bits.shape[0], 64), dtype=bool)
    padded[:, : bits.shape[1]] = bits
    return np.packbits(padded, axis=1).view(">u8").astype(np.uint64).reshape(-1)


@dataclass
class Fingerprints:
    """Fingerprints of many images, row-aligned with the list they were computed for.

    Attributes:
        sha1: Content hash of each image's bytes ("" where it could not be read).
        thumbs: ``(N, 64, 64)`` uint8 grey thumbnails.
        codes: ``(N, 7, 8)`` uint64 pHash codes (windows x symmetries).
        hue: Hue angle (radians) of each image's mean colour around grey, in chromaticity space: unchanged
            by brightness and contrast, so copies keep it while differently coloured lesions of the same
            shape (the confusions of grey correlation) do not.
        ok: Whether each image could be read.
        errors: The reason for each unreadable image ("" otherwise).
    """

    sha1: list[str]
    thumbs: np.ndarray
    codes: np.ndarray
    hue: np.ndarray
    ok: np.ndarray
    errors: list[str]

    def __len__(self) -> int:
        return len(self.sha1)


def _source_bytes(src: Any) -> bytes:
    if isinstance(src, dict):
        if src.get("bytes"):
            return src["bytes"]
        src = src.get("path")
    return Path(src).read_bytes()


def fingerprint(src: Any) -> tuple[str, np.ndarray, np.ndarray]:
    """Fingerprint one image (a path, or a ``datasets`` image dict with bytes or path).

    Returns:
        ``(sha1, thumbnail (64, 64) uint8, codes (7, 8) uint64, hue angle)``.

    Raises:
        OSError, ValueError: The image cannot be read (also decompression bombs).
    """
    from PIL import Image
    from scipy.fft import dctn

    from skinacc.data.images import load_rgb

    data = _source_bytes(src)
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        img = load_rgb(data, 2 * THUMB)  # JPEGs decoded at reduced size: only 64-128 px are needed
    except Image.DecompressionBombError as e:
        raise ValueError(f"decompression bomb: {e}") from e
    mean = np.asarray(img.resize((THUMB, THUMB), Image.BILINEAR), dtype=np.float64).reshape(-1, 3).mean(0)
    chroma = mean / max(mean.sum(), 1e-6) - 1.0 / 3.0
    hue = float(np.arctan2(chroma[1], chroma[0]))
    grey = img.convert("L")
    thumb = np.asarray(grey.resize((THUMB, THUMB), Image.BILINEAR), dtype=np.uint8)
    w, h = grey.size
    codes = np.empty((len(WINDOWS), N_SYM), dtype=np.uint64)
    for i, (x0, y0, x1, y1) in enumerate(WINDOWS):
        box = (round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))
        small = np.asarray(grey.crop(box).resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), dtype=np.float64)
        codes[i] = _pack(dihedral_hashes(dctn(small, norm="ortho")[:8, :8]))
    return sha1, thumb, codes, hue


def _one(src: Any) -> tuple[Any, ...]:
    try:
        return (*fingerprint(src), "")
    except (OSError, ValueError, SyntaxError) as e:
        return "", None, None, 0.0, f"{type(e).__name__}: {e}"


def _cache_key(src: Any) -> str | None:
    """(path, size, mtime) of a file, so a changed file is fingerprinted again; None for in-memory bytes."""
    path = src.get("path") if isinstance(src, dict) and not src.get("bytes") else src
    if not isinstance(path, str | os.PathLike):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def fingerprint_all(
    sources: list[Any], workers: int = 1, cache_dir: str | os.PathLike | None = None
) -> Fingerprints:
    """Fingerprint many images in parallel processes, reusing a cache of earlier results.

    Args:
        sources: Paths or ``datasets`` image dicts.
        workers: Processes (1: in this process).
        cache_dir: Folder for ``audit-fingerprints.npz`` (keyed by path, size and mtime); None: no cache.

    Returns:
        :class:`Fingerprints`, row-aligned with ``sources``; unreadable images have ``ok`` False.
    """
    n = len(sources)
    sha1 = [""] * n
    thumbs = np.zeros((n, THUMB, THUMB), dtype=np.uint8)
    codes = np.zeros((n, len(WINDOWS), N_SYM), dtype=np.uint64)
    hue = np.zeros(n, dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    errors = [""] * n
    keys = [_cache_key(s) for s in sources]
    cache = _load_cache(cache_dir)
    todo = []
    for i, k in enumerate(keys):
        hit = cache.get(k) if k else None
        if hit is not None:
            sha1[i], thumbs[i], codes[i], hue[i], ok[i] = *hit, True
        else:
            todo.append(i)
    if todo:
        jobs = [sources[i] for i in todo]
        if workers > 1 and len(jobs) >= 64:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                results = list(ex.map(_one, jobs, chunksize=32))
        else:
            results = [_one(j) for j in jobs]
        for i, (s, t, c, h, err) in zip(todo, results):
            if err:
                errors[i] = err
                continue
            sha1[i], thumbs[i], codes[i], hue[i], ok[i] = s, t, c, h, True
            if keys[i]:
                cache[keys[i]] = (s, t, c, h)
        _save_cache(cache_dir, cache)
    return Fingerprints(sha1, thumbs, codes, hue, ok, errors)


def _cache_file(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / "audit-fingerprints-v1.npz"


def _load_cache(cache_dir) -> dict[str, tuple[str, np.ndarray, np.ndarray, float]]:
    if cache_dir is None or not _cache_file(cache_dir).is_file():
        return {}
    try:
        with np.load(_cache_file(cache_dir)) as z:
            # Each z[name] reads and inflates the whole array again: read each once (indexing z inside
            # the loop made loading quadratic in time and memory: 23 GB for 3k cached images).
            keys = json.loads(str(z["keys"]))
            sha1, thumbs, codes, hue = z["sha1"], z["thumbs"], z["codes"], z["hue"]
        return {k: (str(sha1[i]), thumbs[i], codes[i], float(hue[i])) for i, k in enumerate(keys)}
    except (OSError, ValueError, KeyError) as e:  # an unreadable cache only costs time
        logger.warning("ignoring the audit cache %s (%s)", _cache_file(cache_dir), e)
        return {}


def _save_cache(cache_dir, cache: dict) -> None:
    if cache_dir is None or not cache:
        return
    path = _cache_file(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(cache)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(
        tmp,
        keys=json.dumps(keys),
        sha1=np.array([cache[k][0] for k in keys]),
        thumbs=np.stack([cache[k][1] for k in keys]),
        codes=np.stack([cache[k][2] for k in keys]),
        hue=np.array([cache[k][3] for k in keys]),
    )
    os.replace(tmp, path)
