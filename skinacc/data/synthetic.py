"""The embedded default dataset: SYNTHETIC dermoscopy-like images, generated from a seed.

These images are not photographs of skin and carry no medical meaning. They exist so that the demo,
the tests and the benchmarks run anywhere without downloads. Each class is a recipe of lesion colour,
shape irregularity, border sharpness, texture and size, drawn on a skin-toned background with
shading, hairs and noise; ``difficulty`` widens the within-class spread and pulls classes together so
that the task is learnable but not trivial.

The set is written as real JPEG files in an image-folder layout (``<root>/<class>/<i>.jpg``) and then
loaded through the same code path as real data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SyntheticSpec", "generate_synthetic_dataset", "synthetic_class_names"]

# Class recipes: (name, lesion RGB, irregularity, border softness, texture, relative size).
# Names say what the generator draws, prefixed "synthetic" so nobody mistakes them for diagnoses.
_RECIPES = [
    ("synthetic_dark_irregular", (60, 35, 30), 0.30, 0.06, "dots", 0.30),
    ("synthetic_brown_round", (130, 85, 55), 0.05, 0.03, "none", 0.28),
    ("synthetic_red_vascular", (180, 60, 70), 0.12, 0.08, "streaks", 0.22),
    ("synthetic_pale_plaque", (200, 150, 130), 0.18, 0.15, "scales", 0.36),
    ("synthetic_blue_gray", (90, 95, 125), 0.10, 0.05, "veil", 0.24),
    ("synthetic_pink_nodule", (215, 120, 140), 0.04, 0.10, "glow", 0.18),
    ("synthetic_black_multicolor", (35, 30, 35), 0.40, 0.04, "blotches", 0.34),
    ("synthetic_tan_small", (165, 125, 90), 0.08, 0.04, "none", 0.14),
    ("synthetic_yellow_crust", (200, 170, 90), 0.22, 0.12, "scales", 0.26),
    ("synthetic_violet_patch", (130, 70, 130), 0.15, 0.10, "dots", 0.30),
    ("synthetic_white_scar", (230, 215, 205), 0.25, 0.05, "streaks", 0.25),
    ("synthetic_orange_ring", (205, 120, 60), 0.06, 0.02, "ring", 0.30),
]

_SKIN_TONES = np.array(
    [(241, 194, 167), (224, 172, 138), (198, 134, 101), (161, 102, 72), (120, 75, 52), (232, 190, 160)],
    dtype=np.float32,
)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters that fully determine a synthetic set (and its cache folder).

    Attributes:
        num_classes: Number of classes (2 to 12 distinct recipes; more reuse recipes with shifted colour).
        images_per_class: Images in every class (the set is balanced, like the seed's).
        image_size: Side of the square images in pixels.
        difficulty: 0 (separable) to 1 (heavily overlapping classes, strong noise).
        seed: Generation seed; the same spec always gives byte-identical files.
    """

    num_classes: int = 6
    images_per_class: int = 80
    image_size: int = 160
    difficulty: float = 0.5
    seed: int = 0

    def fingerprint(self) -> str:
        payload = json.dumps(asdict(self) | {"version": 1}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def synthetic_class_names(num_classes: int) -> list[str]:
    """Class folder names of a synthetic set with ``num_classes`` classes."""
    names = [r[0] for r in _RECIPES]
    return [
        names[i] if i < len(names) else f"{names[i % len(names)]}_{i // len(names)}"
        for i in range(num_classes)
    ]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1


def _render(rng: np.random.Generator, cls: int, size: int, difficulty: float) -> np.ndarray:
    name, colour, irregular, soft, texture, rel = _RECIPES[cls % len(_RECIPES)]
    colour = np.array(colour, dtype=np.float32)
    if cls >= len(_RECIPES):  # extra classes: shift the hue deterministically
        colour = np.roll(colour, cls // len(_RECIPES))
    d = difficulty
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size

    # Skin background: a tone, broad shading, fine noise.
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
    shade = 1 + 0.12 * _smooth_noise(rng, size, 4)
    img = skin[None, None, :] * shade[..., None]

    # Lesion geometry: a radius that wobbles with angle (irregularity), centre and size jittered.
    cx, cy = 0.5 + rng.normal(0, 0.06 + 0.06 * d, 2)
    radius = rel * rng.uniform(1 - 0.35 * (0.5 + d), 1 + 0.35 * (0.5 + d))
    irr = max(0.0, irregular + rng.normal(0, 0.05 + 0.12 * d))
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(xx - cx, yy - cy)
    wobble = np.ones_like(theta)
    for k in range(2, 7):
        wobble += irr / k * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = radius * wobble
    softness = max(0.005, soft * rng.uniform(0.6, 1.4) + 0.03 * d)
    alpha = 1 / (1 + np.exp(-(edge - dist) / (softness * radius + 1e-6)))

    # Lesion colour: class colour, pulled towards a neutral brown as difficulty rises.
    neutral = np.array([120, 80, 60], dtype=np.float32)
    lesion_rgb = (1 - 0.45 * d) * colour + 0.45 * d * neutral + rng.normal(0, 10 + 25 * d, 3)
    lesion = np.broadcast_to(lesion_rgb, img.shape).copy()
    lesion *= (1 + 0.15 * _smooth_noise(rng, size, 8))[..., None]

    # Texture inside the lesion.
    inside = np.clip((edge - dist) / (radius + 1e-6), 0, 1)
    if texture == "dots":
        for _ in range(int(rng.integers(15, 40))):
            px, py = cx + rng.normal(0, radius / 2, 2)
            r = rng.uniform(0.005, 0.015)
            lesion[np.hypot(xx - px, yy - py) < r] *= 0.45
    elif texture == "streaks":
        ang = rng.uniform(0, np.pi)
        lesion *= (1 - 0.25 * (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * rng.uniform(60, 110)) > 0.6))[
            ..., None
        ]
    elif texture == "scales":
        lesion += 45 * (_smooth_noise(rng, size, 24) > 0.4)[..., None]
    elif texture == "veil":
        lesion = lesion * 0.8 + np.array([170, 180, 200], dtype=np.float32) * 0.2 * inside[..., None]
    elif texture == "glow":
        lesion *= (0.85 + 0.3 * inside)[..., None]
    elif texture == "blotches":
        blot = _smooth_noise(rng, size, 6)
        lesion = np.where((blot > 0.2)[..., None], lesion * 0.5 + np.array([150, 60, 50]) * 0.5, lesion)
    elif texture == "ring":
        ring = np.exp(-(((dist - edge * 0.8) / (0.04 * radius + 1e-6)) ** 2))
        lesion = lesion * (1 - 0.5 * ring[..., None]) + 0.5 * ring[..., None] * np.array([90, 40, 20])

    img = img * (1 - alpha[..., None]) + lesion * alpha[..., None]

    # Hairs: thin dark curves across the image, more of them when harder.
    for _ in range(int(rng.poisson(1 + 4 * d))):
        x0, y0, x1, y1 = rng.uniform(0, 1, 4)
        t = np.clip(
            ((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2 + 1e-6), 0, 1
        )
        dl = np.hypot(xx - (x0 + t * (x1 - x0)), yy - (y0 + t * (y1 - y0)))
        img[dl < 0.004 + 0.002 * rng.random()] *= 0.35

    # Global lighting jitter, sensor noise and a dermoscope vignette.
    img *= rng.uniform(1 - 0.2 * d, 1 + 0.1 * d)
    img += rng.normal(0, 4 + 14 * d, img.shape)
    vignette = np.clip(1.25 - 0.9 * np.hypot(xx - 0.5, yy - 0.5), 0.3, 1)
    img *= vignette[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_synthetic_dataset(spec: SyntheticSpec, cache_dir: str | os.PathLike) -> Path:
    """Generate (once) and return the folder of a synthetic image set.

    The folder is ``<cache_dir>/synthetic/<fingerprint>/`` with one sub-folder per class. It is built in
    a temporary folder and renamed into place, so concurrent processes (e.g. DDP ranks) never see a
    half-written set; a finished set is reused.

    Args:
        spec: What to generate.
        cache_dir: Parent cache folder.

    Returns:
        The image-folder root, ready for :func:`skinacc.data.load_skin_dataset`.
    """
    if not 2 <= spec.num_classes <= 64:
        raise ValueError(f"synthetic num_classes={spec.num_classes}: must be between 2 and 64")
    root = Path(cache_dir).expanduser() / "synthetic" / spec.fingerprint()
    if (root / "SPEC.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        names = synthetic_class_names(spec.num_classes)
        for c, name in enumerate(names):
            (tmp / name).mkdir()
            for i in range(spec.images_per_class):
                # One generator per image: any image can be regenerated alone, in any order.
                rng = np.random.default_rng([spec.seed, c, i])
                arr = _render(rng, c, spec.image_size, spec.difficulty)
                Image.fromarray(arr).save(tmp / name / f"{name}_{i:05d}.jpg", quality=90)
        (tmp / "README.md").write_text(
            "# SYNTHETIC images generated by skinacc\n\nNot photographs of skin; no medical meaning. "
            "Regenerate with skinacc.data.generate_synthetic_dataset.\n"
        )
        (tmp / "SPEC.json").write_text(json.dumps(asdict(spec), indent=2))
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first: keep theirs
            if not (root / "SPEC.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
