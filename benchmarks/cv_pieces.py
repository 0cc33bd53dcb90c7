"""What each piece of the dermoscopy recipe adds, decided by grouped 5-fold cross-validation on the shared
ISIC set (BENCHMARKS.md, "What each piece adds, by cross-validation"): the recipe with one piece taken
out, on the same folds and the same number of epochs per fold, scored on the out-of-fold predictions of
all 1,646 images and paired with the full recipe (lesion-resampled CI of the difference).

    python benchmarks/cv_pieces.py --work /tmp/cvcmp --pieces tta eval_size     # no training: ~5 min
    python benchmarks/cv_pieces.py --work /tmp/cvcmp --pieces sampler            # a 5-fold CV: ~35 min
    python benchmarks/cv_pieces.py --work /tmp/cvcmp --score_only                 # every piece run so far

``--work`` holds the full recipe's cross-validation in ``recipe/`` (benchmarks/cv_compare.py writes it).
Each piece pairs with the recipe's fold models scored at the piece's own evaluation size (192 px for the
pieces run before the recipe moved to 160, 160 after). Derived variants (``DERIVED``) are computed from a
training piece's out-of-fold predictions without training, and are reported apart.
Evaluation pieces re-score its fold models on their held-out folds (``skinacc evaluate --split
validation``); training pieces run the recipe's YAML with one value changed (``accelerate launch
recipes/train.py --cv_folds 5 --test_size 0``), one after another, each alone on the machine.
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
import yaml

REPO = Path(__file__).resolve().parents[1]
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
FOLDS = 5

#: piece -> what "without it" means: evaluate flags (eval-only) or YAML changes {section: {key: value}}.
PIECES: dict[str, dict] = {
    "tta": {"eval": ["--tta", "none"], "what": "dihedral TTA -> none"},
    "eval_size": {"eval": ["--image_size", "160"], "what": "evaluation at 192 px -> 160 (the training size)"},
    "sampler": {"yaml": {"train": {"sampler": "random"}}, "what": "balanced sampler -> shuffled"},
    "ema": {"yaml": {"train": {"ema_decay": None}}, "what": "EMA weights -> the last step's"},
    "augment": {
        # the dermoscopic preset's own knobs go too: they are refused with --augment seed
        "yaml": {"data": {"augment": "seed", "auto_augment": None, "random_erasing": None}},
        "what": "dermoscopic augmentation -> seed's crop+flip",
    },
    "freeze": {"yaml": {"model": {"freeze_groups": 0}}, "what": "first 4 groups frozen -> all trained"},
    "optimizer": {
        "yaml": {"train": {"optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0, "warmup_epochs": 0}},
        "what": "AdamW 1e-3 wd 0.05 + warm-up -> Adam 3e-4 (the plain script's)",
    },
    "label_smoothing": {"yaml": {"train": {"label_smoothing": 0.0}}, "what": "label smoothing 0.1 -> 0"},
}


#: Variants computed from a training piece's out-of-fold predictions, without training.
DERIVED: dict[str, dict] = {
    "prior_correction": {
        "from": "sampler",
        "what": "balanced sampler -> shuffled, then probabilities divided by the training folds' class "
        "frequencies (post-hoc logit adjustment, Menon et al. 2021); exploratory: found on these folds",
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default="benchmarks/results/cv_pieces")
    ap.add_argument("--pieces", nargs="*", default=[], choices=sorted(PIECES))
    ap.add_argument("--score_only", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    if not (work / "recipe" / "cv_report.json").is_file():
        raise SystemExit(f"--work={work}: no recipe/cv_report.json (run benchmarks/cv_compare.py first)")
    times_file = work / "pieces_seconds.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    for piece in [] if a.score_only else a.pieces:
        t0 = time.perf_counter()
        (run_eval if "eval" in PIECES[piece] else run_training)(work, piece)
        times[piece] = time.perf_counter() - t0
        times_file.write_text(json.dumps(times, indent=2))
    score(work, Path(a.out), times)


def run_eval(work: Path, piece: str) -> None:
    for k in range(FOLDS):
        out = work / piece / f"fold_{k}"
        if (out / "metrics.json").is_file():
            continue
        subprocess.run(
            [sys.executable, "-m", "skinacc", "evaluate", "--model", str(work / "recipe" / f"fold_{k}"),
             "--split", "validation", "--output_dir", str(out), "--report_to", "none", "--bootstrap", "10",
             "--disable_tqdm", "true", *PIECES[piece]["eval"]],
            check=True, cwd=REPO,
        )  # fmt: skip


def run_training(work: Path, piece: str) -> None:
    cfg = yaml.safe_load((REPO / "recipes/configs/dermoscopy.yaml").read_text())
    for section, values in PIECES[piece]["yaml"].items():
        cfg[section].update(values)
    (work / piece).mkdir(parents=True, exist_ok=True)
    path = work / piece / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run(
        [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs/cpu.yaml"), str(REPO / "recipes/train.py"),
         "--config", str(path), "--data_dir", str(ISIC), "--cv_folds", str(FOLDS), "--test_size", "0",
         "--output_dir", str(work / piece / "cv"), "--report_to", "none", "--disable_tqdm", "true",
         *(["--resume_from_checkpoint", "latest"] if (work / piece / "cv").exists() else [])],
        check=True, cwd=REPO,
    )  # fmt: skip


def predictions(work: Path, piece: str) -> dict[str, np.ndarray] | None:
    """path -> out-of-fold probabilities of one variant (None if it has not run)."""
    from skinacc.run.oof import read_out_of_fold

    if piece == "recipe" or "yaml" in PIECES[piece]:
        root = work / "recipe" if piece == "recipe" else work / piece / "cv"
        if not (root / "cv_report.json").is_file():
            return None
        parts = [read_out_of_fold(root / f"fold_{k}" / "eval_validation" / "oof.npz") for k in range(FOLDS)]
        return {p: pr for d in parts for p, pr in zip(d["path"], d["probs"])}
    out: dict[str, np.ndarray] = {}
    for k in range(FOLDS):
        f = work / piece / f"fold_{k}" / "predictions.csv"
        if not f.is_file():
            return None
        with f.open(newline="") as fh:
            for r in csv.DictReader(fh):
                out[r["path"]] = np.array([float(v) for c, v in r.items() if c.startswith("prob:")])
    return out


def reference(work: Path, piece: str) -> str:
    """The recipe variant a piece is paired with: the recipe's fold models scored at the piece's own
    evaluation size. ``recipe/`` ran when the recipe evaluated at 192 px; pieces trained since (the recipe
    now evaluates at 160) pair with the same fold models re-scored at 160 (``eval_size/``). The recipe
    keeps its last epoch's weights (``select_epoch: last``), so the evaluation size never chose them."""
    if "yaml" in PIECES[piece]:
        cfg = yaml.safe_load((work / piece / "config.yaml").read_text())
        if cfg["data"].get("eval_image_size") is None:
            return "eval_size"
    return "recipe"


def prior_corrected(work: Path, piece: str, labels_of: dict[str, str]) -> dict[str, np.ndarray] | None:
    """A training piece's out-of-fold probabilities divided by the class frequencies of each fold's
    training images (every image outside the fold: ``--test_size 0``) and renormalised: the Bayes
    decision under balanced class priors, with no parameter fitted."""
    from skinacc.run.oof import read_out_of_fold

    root = work / piece / "cv"
    if not (root / "cv_report.json").is_file():
        return None
    parts = [read_out_of_fold(root / f"fold_{k}" / "eval_validation" / "oof.npz") for k in range(FOLDS)]
    names = list(parts[0]["class_names"])
    every = np.array([names.index(c) for c in labels_of.values()])
    out: dict[str, np.ndarray] = {}
    for part in parts:
        held = np.array([names.index(labels_of[p]) for p in part["path"]])
        train = np.bincount(every, minlength=len(names)) - np.bincount(held, minlength=len(names))
        probs = np.asarray(part["probs"], dtype=np.float64) / (train / train.sum())
        out.update(zip(part["path"], probs / probs.sum(1, keepdims=True)))
    return out


def training_minutes(cv_dir: Path) -> list[float]:
    """Each fold's training minutes from its ``history.json`` (the epochs' own times): unlike the wall
    time of one invocation (``seconds``), this counts every epoch once, also across resumed sessions."""
    return [
        round(sum(e["epoch_seconds"] for e in json.loads((cv_dir / f"fold_{k}" / "history.json").read_text())) / 60, 2)
        for k in range(FOLDS)
    ]  # fmt: skip


def score(work: Path, out: Path, times: dict[str, float]) -> None:
    from skinacc.clinical import group_ids, paired_bootstrap
    from skinacc.clinical.report import ClinicalInputs, metric_function
    from skinacc.metrics import compute_all
    from skinacc.run.oof import read_out_of_fold

    first = read_out_of_fold(work / "recipe" / "fold_0" / "eval_validation" / "oof.npz")
    names = first["class_names"]
    with (ISIC / "labels.csv").open(newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    ref = predictions(work, "recipe")
    paths = sorted(ref)
    labels = np.array([names.index(rows[p]["label"]) for p in paths])
    gid = group_ids([rows[p]["lesion_group"] for p in paths], len(paths))
    p_ref = np.stack([ref[p] for p in paths]).astype(np.float64)
    f = lambda pr: metric_function(ClinicalInputs(labels, pr, names))  # noqa: E731
    result = {"images": len(paths), "lesions": int(gid.max()) + 1, "folds": FOLDS, "seconds": times,
              "recipe": {k: compute_all(labels, p_ref, names)[k] for k in ("balanced_accuracy", "accuracy")},
              "pieces": {}}  # fmt: skip
    print(f"recipe: out-of-fold balanced accuracy {result['recipe']['balanced_accuracy']:.4f}")
    refs = {"recipe": p_ref}
    at_160 = predictions(work, "eval_size")
    if at_160 is not None:
        refs["eval_size"] = np.stack([at_160[p] for p in paths]).astype(np.float64)
        refs["eval_size"] /= refs["eval_size"].sum(1, keepdims=True)
        m160 = compute_all(labels, refs["eval_size"], names)
        result["recipe_at_160"] = {k: m160[k] for k in ("balanced_accuracy", "accuracy")}
        result["recipe_at_160"]["recall"] = {n: m160["per_class"][n]["recall"] for n in names}
    result["derived"] = {}
    for piece, spec in [*PIECES.items(), *DERIVED.items()]:
        if piece in DERIVED:
            got = prior_corrected(work, spec["from"], {p: rows[p]["label"] for p in paths})
        else:
            got = predictions(work, piece)
        if got is None:
            continue
        ref = reference(work, spec.get("from", piece))
        if ref not in refs:
            raise SystemExit(f"{piece}: pairs with the recipe scored at 160 px: run --pieces eval_size first")
        pr = np.stack([got[p] for p in paths]).astype(np.float64)
        pr /= pr.sum(1, keepdims=True)
        m = compute_all(labels, pr, names)
        d = paired_bootstrap(f(refs[ref]), f(pr), gid, 2000)
        result["pieces" if piece in PIECES else "derived"][piece] = {
            "without": spec["what"],
            "paired_with": "the recipe at 160 px" if ref == "eval_size" else "the recipe at 192 px",
            "balanced_accuracy": m["balanced_accuracy"],
            "accuracy": m["accuracy"],
            "recall": {n: m["per_class"][n]["recall"] for n in names},
            "recipe_minus_without": {k: d[k] for k in ("balanced_accuracy", "accuracy", "roc_auc_macro")},
        }
        if piece in PIECES and "yaml" in spec:
            result["pieces"][piece]["training_minutes_per_fold"] = training_minutes(work / piece / "cv")
        b = d["balanced_accuracy"]
        print(f"{piece:>16s} ({spec['what']}): balanced accuracy {m['balanced_accuracy']:.4f}; the piece adds "
              f"{b['difference']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_pieces.json").write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
