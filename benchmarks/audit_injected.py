"""The data audit on real dermoscopy with known answers: injected copies and flipped labels.

Builds, under ``--work``, a copy of the shared ISIC set as links to its images (never copies of them),
adds transformed copies of ``--copies_per_kind`` random images for each kind of change (flips/quarter
turns, resizing up and down, crops, JPEG re-encoding, brightness/contrast), one in four filed under another
class, and moves ``--flips`` images to a wrong class folder. Then runs ``skinacc.audit.audit_dataset``
on it and measures:

- recall per kind: the copy lands in one duplicate group with its original;
- false pairs among the untouched originals, split by the set's ``lesion_group``: pairs of one lesion
  (other photographs of it: near-duplicates a lesion-grouped split already keeps together) and pairs of
  different lesions (each is inspected by eye in the report: a real duplicate or a false alarm);
- flipped labels: how many are among the top ``2 x --flips`` suspects, and where they rank;
- wall time of each stage on this machine.

``--scale 10 100`` instead times the duplicate search (fingerprints from cold, then the search) on the
originals replicated as hard links: 1.6k x 10 and x 100 images. Hard links are exact copies, so this
measures the per-image cost (reading, decoding, hashing every file; grouping the exact copies) and
the index, while the fine checks still see the 1.6k distinct images.

    python benchmarks/audit_injected.py --work /tmp/audit_bench --out benchmarks/results/audit_injected
    python benchmarks/audit_injected.py --work /tmp/audit_bench --out benchmarks/results/audit_scale --scale 1 10 100

Writes ``result.json`` and ``summary.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skinacc.audit import audit_dataset  # noqa: E402
from skinacc.config import DataArguments  # noqa: E402
from skinacc.data import load_skin_dataset  # noqa: E402

ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
KINDS = ("flip_rotate", "resize_up", "resize_down", "crop", "jpeg", "jitter")


def transform_copy(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One changed copy of ``img``: the kinds of change a scraped or re-exported set collects."""
    w, h = img.size
    if kind == "flip_rotate":
        return img.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind in ("resize", "resize_up"):
        return img.resize((int(w * 1.7), int(h * 1.7)), Image.Resampling.BICUBIC)
    if kind == "resize_down":
        return img.resize((max(64, w // 2), max(64, h // 2)), Image.Resampling.BILINEAR)
    if kind == "crop":
        # up to 10% off each side's length, as the audit promises (README)
        cw, ch = int(w * rng.uniform(0.9, 0.97)), int(h * rng.uniform(0.9, 0.97))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((x0, y0, x0 + cw, y0 + ch))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=40)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "jitter":
        bright = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.8, 1.2)))
        return ImageEnhance.Contrast(bright).enhance(float(rng.uniform(0.8, 1.2)))
    raise ValueError(f"kind={kind!r}: expected one of {KINDS}")


def build(src: Path, dst: Path, copies_per_kind: int, flips: int, seed: int) -> dict:
    """The injected set under ``dst``; returns what was injected (paths relative to ``dst``)."""
    if dst.exists():
        shutil.rmtree(dst)
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    originals = sorted(p.relative_to(src) for p in src.glob("*/*") if p.suffix.lower() in (".jpg", ".png"))
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(originals), copies_per_kind * len(KINDS) + flips, replace=False)
    flipped = {}
    for i in picks[len(picks) - flips :]:
        rel = originals[i]
        wrong = classes[
            (classes.index(rel.parent.name) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)
        ]
        flipped[str(rel)] = f"{wrong}/{rel.name}"
    for rel in originals:
        out = dst / flipped.get(str(rel), str(rel))
        out.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src / rel, out)
    copies = {}
    for n, i in enumerate(picks[: len(picks) - flips]):
        kind, rel = KINDS[n // copies_per_kind], originals[i]
        cls = rel.parent.name if n % 4 else classes[(classes.index(rel.parent.name) + 1) % len(classes)]
        out = f"{cls}/copy_{kind}_{rel.stem}.png"
        transform_copy(Image.open(src / rel).convert("RGB"), kind, rng).save(dst / out)
        copies[out] = {"kind": kind, "original": str(rel)}
    return {"classes": classes, "copies": copies, "flipped": flipped}


def scale(src: Path, work: Path, out: Path, factors: list[int], workers: int) -> None:
    """Duplicate-search wall time on the originals replicated ``factor`` times as hard links."""
    rows = []
    for factor in factors:
        data_dir, cache = work / f"x{factor}", work / f"x{factor}-cache"
        for d in (data_dir, cache):
            shutil.rmtree(d, ignore_errors=True)
        for f in sorted(p for p in src.glob("*/*") if p.suffix.lower() in (".jpg", ".png")):
            (data_dir / f.parent.name).mkdir(parents=True, exist_ok=True)
            for r in range(factor):
                os.link(f, data_dir / f.parent.name / f"r{r}_{f.name}")
        t0 = time.perf_counter()
        data = load_skin_dataset(
            DataArguments(data_dir=str(data_dir), cache_dir=str(cache), verify_images="header")
        )
        load_s = time.perf_counter() - t0
        report, _ = audit_dataset(data, label_issues=False, quality=False, workers=workers, cache_dir=cache)
        t = report["timing"]
        n = report["num_images"]
        rows.append(
            {
                "images": n,
                "load_s": load_s,
                **t,
                "fingerprint_img_per_s_per_core": n / t["fingerprints_s"] / workers,
                "pairs": report["duplicates"]["pairs"],
                "groups": report["duplicates"]["groups"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(data_dir)
        shutil.rmtree(cache)
        # written after every size, so a long run that is stopped keeps the sizes it finished
        out.mkdir(parents=True, exist_ok=True)
        res = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "workers": workers,
            "command": " ".join(sys.argv),
        }
        (out / "result.json").write_text(json.dumps(res | {"rows": rows}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data_dir", default=str(ISIC))
    ap.add_argument("--copies_per_kind", type=int, default=40)
    ap.add_argument("--flips", type=int, default=40)
    ap.add_argument("--work", default="/tmp/audit_bench")
    ap.add_argument("--out", default="benchmarks/results/audit_injected")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, nargs="*", help="Time the duplicate search at these replications.")
    args = ap.parse_args()
    src, work, out = Path(args.data_dir), Path(args.work), Path(args.out)
    if not (src / "labels.csv").is_file():
        sys.exit(
            f"--data_dir={src}: no labels.csv (lesion groups) there; this benchmark needs the shared ISIC set"
        )
    if args.scale:
        return scale(src, work, Path(args.out), args.scale, args.workers)
    lesion = {r["path"]: r["lesion_group"] for r in csv.DictReader((src / "labels.csv").open())}
    shutil.rmtree(work / "cache", ignore_errors=True)  # time the fingerprints from cold
    truth = build(src, work / "data", args.copies_per_kind, args.flips, args.seed)
    origin = {v: k for k, v in truth["flipped"].items()}  # where a moved image came from

    t0 = time.perf_counter()
    data = load_skin_dataset(DataArguments(data_dir=str(work / "data"), cache_dir=str(work / "cache")))
    load_s = time.perf_counter() - t0
    report, tables = audit_dataset(data, quality=False, workers=args.workers, cache_dir=work / "cache")
    rows = tables["rows"]
    paths = [str(p) for p in rows["path"]]
    group_of = {}
    for g in tables["duplicates"]:
        for m in g["members"]:
            group_of[paths[m]] = g["group"]

    def orig_rel(p: str) -> str:
        return origin.get(p, p)

    recall = {k: [0, 0] for k in KINDS}
    for copy, info in truth["copies"].items():
        where = truth["flipped"].get(info["original"], info["original"])
        recall[info["kind"]][1] += 1
        recall[info["kind"]][0] += copy in group_of and group_of.get(where) == group_of[copy]
    same, different = [], []
    for p in tables["pairs"]:
        a, b = paths[p.a], paths[p.b]
        if a in truth["copies"] or b in truth["copies"]:
            continue
        la, lb = lesion[orig_rel(a)], lesion[orig_rel(b)]
        (same if la == lb else different).append(
            {"a": orig_rel(a), "b": orig_rel(b), "similarity": round(p.similarity, 3), "kind": p.kind}
        )
    suspects = [i["path"] for i in tables["label_issues"]]
    k = 2 * args.flips
    ranks = sorted(suspects.index(p) + 1 for p in truth["flipped"].values() if p in suspects)
    n_orig = len(rows["path"]) - len(truth["copies"])
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "images": len(rows["path"]),
        "originals": n_orig,
        "injected_copies": len(truth["copies"]),
        "recall_by_kind": {k_: f"{a}/{b}" for k_, (a, b) in recall.items()},
        "recall": sum(a for a, _ in recall.values()) / max(1, sum(b for _, b in recall.values())),
        "original_pairs_same_lesion": len(same),
        "original_images_in_same_lesion_pairs": len({x for p in same for x in (p["a"], p["b"])}),
        "original_pairs_different_lesion": different,
        "original_pair_rate_different_lesion": len(different) / (n_orig * (n_orig - 1) / 2),
        "flipped": args.flips,
        "flipped_in_top_k": {
            "k": k,
            "found": sum(r <= k for r in ranks),
            "precision": sum(r <= k for r in ranks) / k,
        },
        "flipped_suspected_at_all": len(ranks),
        "flipped_ranks": ranks,
        "suspects": len(suspects),
        "label_probe_accuracy": report["label_issues"]["out_of_fold_accuracy"],
        "seconds": {"load": load_s, **report["timing"]},
        "duplicate_search": {k_: report["duplicates"][k_] for k_ in ("hash_candidates", "checked", "pairs")},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(res, indent=2))
    lines = [
        f"{res['images']} images ({n_orig} originals, {res['injected_copies']} injected copies, "
        f"{args.flips} flipped labels); {res['machine']}",
        "",
        "| kind | " + " | ".join(KINDS) + " | all |",
        "|---|" + "---:|" * (len(KINDS) + 1),
        "| copies found | "
        + " | ".join(res["recall_by_kind"][k_] for k_ in KINDS)
        + f" | {res['recall']:.3f} |",
        "",
        f"pairs among the originals: {len(same)} of one lesion, {len(different)} of different lesions",
        f"flipped labels among the top {k} suspects: {res['flipped_in_top_k']['found']}/{args.flips} "
        f"(precision {res['flipped_in_top_k']['precision']:.2f}); suspected at all: {len(ranks)}/{args.flips}",
        "seconds: " + ", ".join(f"{k_} {v:.1f}" for k_, v in res["seconds"].items()),
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(different, indent=1))


if __name__ == "__main__":
    main()
