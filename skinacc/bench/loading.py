"""Benchmarks of the input pipeline: loading strategies side by side.

Every strategy reads the same files and produces the same thing, a normalised float batch of
``image_size`` crops, so images/s compare side by side in one run:

- ``torchvision_imagefolder``: the plain baseline, ``ImageFolder`` + torchvision transforms + DataLoader;
- ``hf_imagefolder_plain``: ``datasets``' imagefolder + ``with_transform`` of the same torchvision transforms;
- ``skinacc``: skinacc's default (HF datasets, reduced-size JPEG decode, uint8 hand-off, batched normalise);
- ``skinacc_full_decode``: the same without reduced-size decoding (isolates libjpeg DCT scaling);
- ``single_process``: skinacc's transform in the main process (no workers);
- ``manual_split``: the files split across N processes by hand, each decoding its share alone;
- ``preresized_cache``: decode + resize paid once with ``datasets.map``, then short decodes;
- ``gpu_decode``: ``torchvision.io.decode_jpeg`` on CUDA (skipped without CUDA).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinacc.config.tools import LOADER_STRATEGIES, LoadingBenchArguments
from skinacc.data.data_config import DataConfig
from skinacc.data.transforms import BatchNormalizer, ImageTransform, preresize

__all__ = [
    "LOADER_STRATEGIES",
    "make_large_jpegs",
    "run_loader_benchmark",
    "run_loading_benchmark",
    "time_batches",
]


def time_batches(batches: Iterable, finish, max_images: int, warmup_batches: int = 1) -> dict[str, float]:
    """Iterate ``batches``, apply ``finish`` (to the device, normalise) and time the images after warm-up."""
    it = iter(batches)
    for _ in range(warmup_batches):
        x = finish(next(it))
    n, t0 = 0, time.perf_counter()
    for b in it:
        x = finish(b)
        n += x.shape[0]
        if n >= max_images:
            break
    if x.is_cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"images": n, "seconds": dt, "images_per_sec": n / dt if dt > 0 else 0.0}


def _upscale_one(args: tuple[str, str, int, int]) -> None:
    src, dst, size, seed = args
    img = Image.open(src).convert("RGB")
    w, h = img.size
    big = img.resize((size, round(size * h / w)), Image.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (big.size[1], big.size[0], 3), dtype=np.int16)
    Image.fromarray(np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)).save(
        dst, quality=92
    )


def make_large_jpegs(
    src_root: str | os.PathLike,
    dst_root: str | os.PathLike,
    size: int = 1200,
    limit_per_class: int | None = None,
    workers: int | None = None,
) -> Path:
    """Upscale an image folder to ``size`` px JPEGs (with fresh sensor noise), like the Kaggle originals.

    Built once (a ``.done`` marker), in parallel over ``workers`` processes (default: all cores).
    """
    src, dst = Path(src_root), Path(dst_root)
    if (dst / ".done").is_file():
        return dst
    jobs = []
    for cdir in sorted(d for d in src.iterdir() if d.is_dir()):
        (dst / cdir.name).mkdir(parents=True, exist_ok=True)
        files = sorted(f for f in cdir.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))[
            :limit_per_class
        ]
        jobs += [
            (str(f), str(dst / cdir.name / f"{f.stem}.jpg"), size, len(jobs) + i) for i, f in enumerate(files)
        ]
    with ProcessPoolExecutor(workers or os.cpu_count()) as ex:
        list(ex.map(_upscale_one, jobs, chunksize=16))
    (dst / ".done").write_text("ok")
    return dst


def _tv_transform(cfg: DataConfig, train: bool):
    from torchvision import transforms as T

    interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}.get(
        cfg.interpolation, T.InterpolationMode.BILINEAR
    )
    crop = T.RandomCrop(cfg.image_size) if train else T.CenterCrop(cfg.image_size)
    ops = [T.Resize(cfg.resize_size, interpolation=interp), crop] + (
        [T.RandomHorizontalFlip()] if train else []
    )
    return T.Compose([*ops, T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


def _decode_share(args: tuple[list[str], dict]) -> int:
    files, cfgd = args
    t = ImageTransform(
        DataConfig(**{**cfgd, "mean": tuple(cfgd["mean"]), "std": tuple(cfgd["std"])}), train=True
    )
    for i, f in enumerate(files):
        t._one(f, i)
    return len(files)


def run_loader_benchmark(
    root: str | os.PathLike,
    cfg: DataConfig,
    strategies: Iterable[str] = LOADER_STRATEGIES,
    batch_size: int = 64,
    workers: int = 2,
    max_images: int = 512,
    device: str = "cpu",
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Measure images/s of each loading strategy over the same image folder.

    Args:
        root: ``<root>/<class>/*.jpg``.
        cfg: Sizes and normalisation (the same for every strategy).
        strategies: Subset of :data:`LOADER_STRATEGIES`.
        batch_size: Batch size.
        workers: DataLoader workers (and processes for ``manual_split``).
        max_images: Images timed per strategy (after one warm-up batch).
        device: Where batches are finished (normalised).
        repeats: Timed runs per strategy, interleaved; the median is reported.

    Returns:
        One dict per strategy: ``strategy``, ``images_per_sec``, ``images``, ``seconds`` (and
        ``skipped`` with a reason, or ``setup_seconds`` for one-off preparation).
    """
    import datasets
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from skinacc.data.loaders import build_dataloader
    from skinacc.data.transforms import set_transforms

    root = Path(root)
    dev = torch.device(device)
    norm = BatchNormalizer(cfg, dev)
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    classes = sorted({Path(f).parent.name for f in files})
    feats = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=classes),
            "sample_id": datasets.Value("int64"),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "image": files,
            "label": [classes.index(Path(f).parent.name) for f in files],
            "sample_id": list(range(len(files))),
        },
        features=feats,
    )
    max_images = min(max_images, len(files) - batch_size)
    to_dev_float = lambda b: b[0].to(dev, non_blocking=True)  # noqa: E731  (already normalised on CPU)
    to_dev_uint8 = lambda b: norm(b["pixel_values"])  # noqa: E731
    small_cache: dict[str, Any] = {}

    def measure(name: str) -> dict[str, Any]:
        if name == "torchvision_imagefolder":
            dl = DataLoader(
                ImageFolder(str(root), transform=_tv_transform(cfg, True)),
                batch_size,
                shuffle=True,
                num_workers=workers,
            )
            return time_batches(dl, to_dev_float, max_images)
        if name == "hf_imagefolder_plain":
            tv = _tv_transform(cfg, True)
            hf = table.with_transform(
                lambda b: {"x": [tv(im.convert("RGB")) for im in b["image"]], "y": b["label"]}
            )
            dl = DataLoader(
                hf,
                batch_size,
                shuffle=True,
                num_workers=workers,
                collate_fn=lambda s: (torch.stack([r["x"] for r in s]), torch.tensor([r["y"] for r in s])),
            )
            return time_batches(dl, to_dev_float, max_images)
        if name in ("skinacc", "skinacc_full_decode", "single_process"):
            ds = set_transforms({"train": table}, cfg, fast_decode=name != "skinacc_full_decode")["train"]
            n_workers = 0 if name == "single_process" else workers
            dl = build_dataloader(
                ds, batch_size, train=True, num_workers=n_workers, persistent_workers=False, prefetch_factor=2
            )
            return time_batches(dl, to_dev_uint8, max_images) | {"workers": n_workers}
        if name == "manual_split":
            chunks = [files[:max_images][i::workers] for i in range(workers)]
            cfgd = cfg.to_dict()
            with ProcessPoolExecutor(workers) as ex:
                list(ex.map(_decode_share, [(c[:2], cfgd) for c in chunks]))  # warm-up: start processes
                t0 = time.perf_counter()
                n = sum(ex.map(_decode_share, [(c, cfgd) for c in chunks]))
                dt = time.perf_counter() - t0
            return {
                "images": n,
                "seconds": dt,
                "images_per_sec": n / dt,
                "note": "decode+transform only, no batching",
            }
        if name == "preresized_cache":
            if "ds" not in small_cache:  # built once, its cost reported apart
                import tempfile

                t0 = time.perf_counter()
                small = preresize(
                    {"train": table.add_column("path", files)},
                    cfg.resize_size,
                    tempfile.mkdtemp(prefix="skinacc-preresize-"),
                    workers,
                )
                small_cache["ds"] = set_transforms(small, cfg)["train"]
                small_cache["setup_seconds"] = time.perf_counter() - t0
            dl = build_dataloader(
                small_cache["ds"],
                batch_size,
                train=True,
                num_workers=workers,
                persistent_workers=False,
                prefetch_factor=2,
            )
            return time_batches(dl, to_dev_uint8, max_images) | {
                "setup_seconds": small_cache["setup_seconds"]
            }
        if name == "gpu_decode":
            if not torch.cuda.is_available():
                return {"skipped": "no CUDA device"}
            return _gpu_decode(files, cfg, batch_size, max_images, norm)
        raise ValueError(f"unknown strategy {name!r}; choose from {LOADER_STRATEGIES}")

    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in strategies}
    for _ in range(repeats):  # round-robin, so drifting machine load hits every strategy alike
        for name in strategies:
            try:
                runs[name].append(measure(name))
            except Exception as e:  # one strategy failing must not hide the others' figures
                runs[name].append({"skipped": f"failed: {type(e).__name__}: {e}"})
    results = []
    for name, rows in runs.items():
        ok = [r for r in rows if "images_per_sec" in r]
        row = {"strategy": name, "workers": workers, "batch_size": batch_size}
        if ok:
            ips = sorted(r["images_per_sec"] for r in ok)
            row |= ok[0] | {"images_per_sec": float(np.median(ips)), "images_per_sec_runs": ips}
        else:
            row |= rows[0]
        results.append(row)
    base = next(
        (
            r["images_per_sec"]
            for r in results
            if r["strategy"] == "torchvision_imagefolder" and "images_per_sec" in r
        ),
        None,
    )
    for r in results:
        if base and "images_per_sec" in r:
            r["vs_imagefolder"] = r["images_per_sec"] / base
    return results


def _gpu_decode(
    files: list[str], cfg: DataConfig, batch_size: int, max_images: int, norm: BatchNormalizer
) -> dict[str, float]:
    """nvJPEG through torchvision: read bytes on the CPU, decode, resize and crop on the GPU."""
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    def batches():
        for i in range(0, len(files) - batch_size + 1, batch_size):
            data = [read_file(f) for f in files[i : i + batch_size]]
            imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
            out = []
            for im in imgs:
                h, w = im.shape[-2:]
                s = cfg.resize_size / min(h, w)
                im = F.interpolate(
                    im[None].float(),
                    size=(max(cfg.image_size, round(h * s)), max(cfg.image_size, round(w * s))),
                    mode="bilinear",
                    antialias=True,
                )[0]
                top, left = (im.shape[1] - cfg.image_size) // 2, (im.shape[2] - cfg.image_size) // 2
                out.append(im[:, top : top + cfg.image_size, left : left + cfg.image_size])
            yield {"pixel_values": torch.stack(out).clamp_(0, 255)}

    return time_batches(batches(), lambda b: norm(b["pixel_values"]), max_images)


def run_loading_benchmark(args: LoadingBenchArguments) -> list[dict]:
    """``skinacc benchmark-loading``: every strategy on the small and the large image sets; writes
    ``loading.json``, ``loading.csv`` and ``loading.png`` to ``args.output_dir``."""
    import platform
    import tempfile
    import zlib
    from datetime import date

    from skinacc.config import default_cache_dir
    from skinacc.data import SyntheticSpec, generate_synthetic_dataset, resolve_data_config
    from skinacc.plots import plot_loader_benchmark
    from skinacc.rundir import write_rows
    from skinacc.tracking import log_results_run

    # The shared ISIC set beside the repository checkout, when present (as the recipe found it before).
    isic8 = Path(__file__).resolve().parents[3] / "shared" / "data" / "isic8-dermoscopy"
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    small = (
        Path(args.data_dir)
        if args.data_dir
        else (
            isic8
            if (isic8 / "labels.csv").is_file()
            else generate_synthetic_dataset(SyntheticSpec(8, 60, 180), default_cache_dir())
        )
    )
    cfg = resolve_data_config(None, image_size=args.image_size)
    results = []
    for image_set in args.image_sets:
        if image_set == "small":
            root = small
        elif args.large_dir:
            root = Path(args.large_dir)
        else:  # keyed on the source, size and count, so later runs reuse it
            key = zlib.crc32(f"{Path(small).resolve()}|{args.large_per_class}".encode())
            root = make_large_jpegs(
                small,
                Path(tempfile.gettempdir()) / f"skinacc-large-{args.large_size}-{key:08x}",
                args.large_size,
                args.large_per_class,
            )
        for r in run_loader_benchmark(
            root,
            cfg,
            args.strategies,
            args.batch_size,
            args.workers,
            args.max_images,
            args.device,
            args.repeats,
        ):
            results.append({"image_set": image_set, "root": str(root), **r})
            print(
                f"{image_set:5s} {r['strategy']:24s} "
                + (f"{r['images_per_sec']:8.1f} img/s" if "images_per_sec" in r else r.get("skipped", ""))
                + (f"  ({r['vs_imagefolder']:.2f}x ImageFolder)" if "vs_imagefolder" in r else "")
            )
    meta = {
        "machine": platform.node(),
        "cpu_count": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "date": str(date.today()),
        "device": args.device,
        "args": vars(args),
    }
    write_rows(out / "loading", results, meta)
    plot_loader_benchmark(results, out / "loading.png")
    log_results_run(
        args.report_to, args.project, "benchmark_dataloading", results, [out / "loading.png"], meta, out
    )
    print(f"wrote {out / 'loading.json'}, loading.csv, loading.png")
    return results
