"""Decoding images robustly and fast.

Every image that reaches a model goes through :func:`load_rgb`: JPEGs far larger than the target are
decoded at reduced size by libjpeg's DCT scaling (``Image.draft``), EXIF orientation is applied, and
grayscale, RGBA, palette, CMYK and 16-bit images are converted to 8-bit RGB. :func:`check_image` is the
verification used when a dataset is loaded; it says why a file cannot be used.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "check_image", "load_rgb", "open_image", "to_rgb"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif"})

#: skinacc's own reads warn above this many pixels and refuse twice as many (PIL's decompression-bomb
#: check; PIL's default is ~89 MP). Dermoscopy images are far below it. It is applied around skinacc's
#: own opens only: importing skinacc leaves ``PIL.Image.MAX_IMAGE_PIXELS`` as it was for other code.
MAX_IMAGE_PIXELS = 200_000_000
_PIXEL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pixel_limit() -> Iterator[None]:
    # PIL reads its module-level limit when it opens a file; the lock keeps concurrent skinacc opens
    # from restoring each other's value instead of the caller's.
    with _PIXEL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def open_image(src: Any) -> Image.Image:
    """Open a path, bytes, or a ``datasets`` Image dict (``{"bytes", "path"}``) lazily."""
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, dict):
        src = src.get("bytes") or src.get("path")
    if isinstance(src, bytes | bytearray):
        src = io.BytesIO(src)
    elif not isinstance(src, str | os.PathLike):
        raise TypeError(f"cannot open an image from {type(src).__name__}")
    with _pixel_limit():
        return Image.open(src)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit and 32-bit integer images are rescaled by their bit depth rather than clipped (PIL's own
    ``convert`` would saturate them to white); transparent images are composited onto white.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(src: Any, min_size: int | None = None) -> Image.Image:
    """Decode an image to RGB, at reduced size when that loses nothing the model sees.

    Args:
        src: Path, bytes, or a ``datasets`` Image dict.
        min_size: When given, a JPEG is decoded by libjpeg at the largest 1/2, 1/4 or 1/8 scale whose
            both sides are still at least ``min_size`` (the shorter-side resize target), which skips most
            of the decoding work for large photographs.

    Returns:
        A loaded RGB image, EXIF orientation applied.

    Raises:
        OSError, UnidentifiedImageError, ValueError: The file is not a readable image.
    """
    img = open_image(src)
    if min_size and img.format == "JPEG" and min(img.size) >= 2 * min_size:
        img.draft("RGB" if img.mode in ("RGB", "YCbCr") else img.mode, (min_size, min_size))
    img.load()
    if img.getexif().get(0x0112, 1) != 1:  # orientation tag: only transpose when it says so
        img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def check_image(src: Any, level: str = "full") -> tuple[bool, str, str]:
    """Say whether an image can be used.

    Args:
        src: Path, bytes, or a ``datasets`` Image dict.
        level: ``"full"`` decodes the whole file (at the smallest DCT scale for JPEG, so it is cheap),
            catching truncated and corrupt data; ``"header"`` only parses the header.

    Returns:
        ``(ok, reason, mode)``: ``reason`` is empty when ok; ``mode`` is the original PIL mode.
    """
    try:
        if isinstance(src, str | os.PathLike) and os.path.getsize(src) == 0:
            return False, "empty file (0 bytes)", ""
        if isinstance(src, dict) and not (src.get("bytes") or src.get("path")):
            return False, "no image data", ""
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(src)
            mode = img.mode
            if level == "full":
                if img.format == "JPEG":
                    img.draft(img.mode if img.mode != "YCbCr" else "RGB", (1, 1))
                img.load()
                to_rgb(img)
            else:
                img.verify()
        return True, "", mode
    except UnidentifiedImageError:
        return False, "not an image (unrecognised format)", ""
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            return False, f"truncated image: {msg}", ""
        return False, f"cannot decode: {msg}", ""
