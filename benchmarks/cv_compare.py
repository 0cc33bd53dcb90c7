"""The dermoscopy recipe against the sensible plain timm script by grouped 5-fold cross-validation on
the shared ISIC set (BENCHMARKS.md, "Accuracy on real dermoscopy"): the same folds (the recipe's
``--cv_folds 5``: stratified by class, whole lesions per fold, split seed 42, no test split), out-of-fold
predictions for every one of the 1,646 images from each, and their paired difference with a CI that
resamples whole lesions.

    python benchmarks/cv_compare.py --work /tmp/cvcmp --out benchmarks/results/cv_compare
    python benchmarks/cv_compare.py --work /tmp/cvcmp --out ... --skip_train     # re-score only

The recipe runs as ``accelerate launch recipes/train.py --config recipes/configs/dermoscopy.yaml
--cv_folds 5 --test_size 0``; the baseline as ``benchmarks/plain_timm_baseline.py`` (10 epochs, its
sensible default augmentation) on each fold's train/held-out CSV. Every training runs alone, one after
another.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
FOLDS, SEED = 5, 42


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default="benchmarks/results/cv_compare")
    ap.add_argument("--baseline_epochs", type=int, default=10)
    ap.add_argument("--skip_train", action="store_true")
    ap.add_argument("--only", choices=["recipe", "baseline"], default=None)
    a = ap.parse_args()
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    if not a.skip_train and a.only != "baseline":
        t0 = time.perf_counter()
        subprocess.run(
            [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs/cpu.yaml"), str(REPO / "recipes/train.py"),
             "--config", str(REPO / "recipes/configs/dermoscopy.yaml"), "--data_dir", str(ISIC), "--cv_folds", str(FOLDS),
             "--test_size", "0", "--output_dir", str(work / "recipe"), "--report_to", "none", "--disable_tqdm", "true",
             *(["--resume_from_checkpoint", "latest"] if (work / "recipe").exists() else [])],
            check=True, cwd=REPO,
        )  # fmt: skip
        times["recipe_seconds"] = time.perf_counter() - t0
    if not a.skip_train and a.only != "recipe":
        t0 = time.perf_counter()
        for k, csv_path in enumerate(fold_csvs(work)):
            pred = work / "baseline" / f"fold_{k}.npz"
            if pred.is_file():
                continue
            subprocess.run(
                [sys.executable, str(REPO / "benchmarks/plain_timm_baseline.py"), "--split_csv", str(csv_path),
                 "--out", str(pred), "--epochs", str(a.baseline_epochs), "--seed", "0"],
                check=True, cwd=REPO,
            )  # fmt: skip
        times["baseline_seconds"] = time.perf_counter() - t0
    score(work, out, times)


def fold_csvs(work: Path) -> list[Path]:
    """One CSV per fold (path,label,split; the held-out fold as 'test'): the recipe's own folds, read from
    its folds' out-of-fold files, so both train and score on exactly the same images."""
    from skinacc.run.oof import read_out_of_fold

    with (ISIC / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    paths = []
    (work / "baseline").mkdir(parents=True, exist_ok=True)
    for k in range(FOLDS):
        held = set(
            read_out_of_fold(work / "recipe" / f"fold_{k}" / "eval_validation" / "oof.npz")["path"].tolist()
        )
        p = work / "baseline" / f"fold_{k}.csv"
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "split"])
            for r in rows:
                w.writerow([str(ISIC / r["path"]), r["label"], "test" if r["path"] in held else "train"])
        paths.append(p)
    return paths


def score(work: Path, out: Path, times: dict[str, float]) -> None:
    """Out-of-fold figures of both, joined on the image path, and their paired difference."""
    from skinacc.clinical import group_ids, paired_bootstrap
    from skinacc.clinical.report import ClinicalInputs, clinical_evaluation, metric_function
    from skinacc.metrics import compute_all
    from skinacc.run.oof import read_out_of_fold

    with (ISIC / "labels.csv").open(newline="") as f:
        lesion = {r["path"]: r["lesion_group"] for r in csv.DictReader(f)}
    rec = [
        read_out_of_fold(work / "recipe" / f"fold_{k}" / "eval_validation" / "oof.npz") for k in range(FOLDS)
    ]
    names = rec[0]["class_names"]
    r_paths = np.concatenate([r["path"] for r in rec])
    r_probs = np.concatenate([r["probs"] for r in rec])
    r_labels = np.concatenate([r["label"] for r in rec])
    r_fold = np.concatenate([r["fold"] for r in rec])
    base = [np.load(work / "baseline" / f"fold_{k}.npz") for k in range(FOLDS)]
    b_index = {}
    for k, b in enumerate(base):
        assert [str(c) for c in b["classes"]] == names
        for i, p in enumerate(b["paths"]):
            b_index[str(Path(p).relative_to(ISIC))] = (k, i)
    order = [b_index[p] for p in r_paths]
    b_probs = np.stack([base[k]["probs"][i] for k, i in order]).astype(np.float64)
    b_probs /= b_probs.sum(1, keepdims=True)
    b_labels = np.array([base[k]["labels"][i] for k, i in order])
    assert np.array_equal(b_labels, r_labels), "both scored on the same images and labels"
    groups = [lesion[p] for p in r_paths]
    gid = group_ids(groups, len(groups))
    result: dict = {"images": len(r_paths), "lesions": int(gid.max()) + 1, "folds": FOLDS, **times}
    for name, probs in (("recipe", r_probs), ("baseline", b_probs)):
        m = compute_all(r_labels, probs, names)
        ci = clinical_evaluation(ClinicalInputs(r_labels, probs, names, groups, "lesion_group"), n_boot=2000)
        per_fold = [
            compute_all(r_labels[r_fold == k], probs[r_fold == k], names)["balanced_accuracy"]
            for k in range(FOLDS)
        ]
        result[name] = {
            "out_of_fold": {
                k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece")
            },
            "ci": ci["headline"],
            "recall": {n: m["per_class"][n]["recall"] for n in names},
            "per_fold_balanced_accuracy": per_fold,
        }
    x = lambda p: metric_function(ClinicalInputs(r_labels, p, names))  # noqa: E731
    result["paired_recipe_minus_baseline"] = paired_bootstrap(x(r_probs), x(b_probs), gid, 2000)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_compare.json").write_text(json.dumps(result, indent=2, default=float))
    for name in ("recipe", "baseline"):
        v = result[name]["ci"]["balanced_accuracy"]
        f = result[name]["per_fold_balanced_accuracy"]
        print(f"{name:>8s}: out-of-fold balanced accuracy {v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]; "
              f"folds {np.mean(f):.4f} ± {np.std(f, ddof=1):.4f}")  # fmt: skip
    d = result["paired_recipe_minus_baseline"]["balanced_accuracy"]
    print(f"recipe - baseline: {d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")


if __name__ == "__main__":
    main()
