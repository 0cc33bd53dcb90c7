"""Which final model to ship after a cross-validation, measured on lesions none of them saw
(BENCHMARKS.md, "A final model on all the data"): nested, a lesion-disjoint outer test split (20 %, split
seed 42) is held out, the dermoscopy recipe is cross-validated 5-fold on the rest, and then, each scored
once on the outer test:

- each fold model alone (what a single train/validation split would ship: 80 % of the data);
- the ensemble of the 5 fold models (``<cv>/ensemble``, written by the cross-validation);
- the uniform and the greedy weight soup (``skinacc ensemble --soup both``);
- a final fit on all the cross-validated images for the CV's epoch count, with the out-of-fold temperature
  (``--final_fit --calibrate_from <cv>``).

    python benchmarks/cv_final_models.py --work /tmp/cvfinal --out benchmarks/results/cv_final_models

Every step is kept in --work and skipped when run again; trainings run one after another, alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
FOLDS, TEST = 5, "0.2"
LAUNCH = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs/cpu.yaml"), str(REPO / "recipes/train.py"),
          "--config", str(REPO / "recipes/configs/dermoscopy.yaml"), "--data_dir", str(ISIC), "--test_size", TEST,
          "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default="benchmarks/results/cv_final_models")
    a = ap.parse_args()
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    times_file = work / "seconds.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}

    def step(name: str, done: Path, cmd: list[str]) -> None:
        if done.exists():
            return
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        times[name] = time.perf_counter() - t0
        times_file.write_text(json.dumps(times, indent=2))

    cv = work / "cv"
    step("cross_validation", cv / "cv_report.json",
         [*LAUNCH, "--cv_folds", str(FOLDS), "--output_dir", str(cv),
          *(["--resume_from_checkpoint", "latest"] if cv.exists() else [])])  # fmt: skip
    step("soups", cv / "soup_greedy" / "config.json",
         [sys.executable, "-m", "skinacc", "ensemble", "--cv_dir", str(cv), "--soup", "both"])  # fmt: skip
    epochs = json.loads((cv / "cv_report.json").read_text())["final_fit_epochs"]
    final = work / "final_fit"
    step("final_fit", final / "summary.json",
         [*LAUNCH, "--final_fit", "--epochs", str(epochs), "--calibrate", "false", "--calibrate_from", str(cv),
          "--eval_test", "false", "--output_dir", str(final)])  # fmt: skip
    models = {f"fold_{k}": cv / f"fold_{k}" for k in range(FOLDS)}
    models |= {"ensemble": cv / "ensemble", "soup_uniform": cv / "soup_uniform",
               "soup_greedy": cv / "soup_greedy", "final_fit": final}  # fmt: skip
    for name, model in models.items():
        # The outer test split, rebuilt from each run's own data options (its run_config.yaml).
        step(f"eval_{name}", work / "eval" / name / "metrics.json",
             [sys.executable, "-m", "skinacc", "evaluate", "--model", str(model), "--split", "test",
              "--output_dir", str(work / "eval" / name), "--report_to", "none", "--bootstrap", "10",
              "--disable_tqdm", "true"])  # fmt: skip
    score(work, out, list(models), times)


def score(work: Path, out: Path, names: list[str], times: dict[str, float]) -> None:
    import csv

    from skinacc.clinical import group_ids, paired_bootstrap
    from skinacc.clinical.report import ClinicalInputs, clinical_evaluation, metric_function

    with (ISIC / "labels.csv").open(newline="") as f:
        lesion = {r["path"]: r["lesion_group"] for r in csv.DictReader(f)}
    preds: dict[str, dict[str, np.ndarray]] = {}
    truth: dict[str, str] = {}
    classes: list[str] = []
    for name in names:
        with (work / "eval" / name / "predictions.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        classes = [c[len("prob:") :] for c in rows[0] if c.startswith("prob:")]
        preds[name] = {r["path"]: np.array([float(r[f"prob:{c}"]) for c in classes]) for r in rows}
        truth |= {r["path"]: r["true"] for r in rows}
    paths = sorted(preds[names[0]])
    assert all(sorted(p) == paths for p in preds.values()), "every model scored on the same outer test images"
    labels = np.array([classes.index(truth[p]) for p in paths])
    groups = [lesion[p] for p in paths]
    gid = group_ids(groups, len(groups))
    probs = {n: np.stack([preds[n][p] for p in paths]) for n in names}
    probs = {n: p / p.sum(1, keepdims=True) for n, p in probs.items()}
    fn = {n: metric_function(ClinicalInputs(labels, p, classes)) for n, p in probs.items()}
    result: dict = {"outer_test_images": len(paths), "outer_test_lesions": int(gid.max()) + 1,
                    "seconds": times, "models": {}, "paired": {}}  # fmt: skip
    for n in names:
        ci = clinical_evaluation(
            ClinicalInputs(labels, probs[n], classes, groups, "lesion_group"), n_boot=2000
        )
        result["models"][n] = {k: ci["headline"][k] for k in ("balanced_accuracy", "accuracy", "roc_auc_macro", "ece")
                               if k in ci["headline"]}  # fmt: skip
    singles = [n for n in names if n.startswith("fold_")]
    for a, b in (
        [("ensemble", s) for s in singles]
        + [(x, "ensemble") for x in ("soup_uniform", "soup_greedy", "final_fit")]
        + [(x, s) for x in ("soup_uniform", "soup_greedy", "final_fit") for s in singles]
    ):
        d = paired_bootstrap(fn[a], fn[b], gid, 2000)
        result["paired"][f"{a} - {b}"] = {k: d[k] for k in ("balanced_accuracy", "accuracy", "roc_auc_macro")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_final_models.json").write_text(json.dumps(result, indent=2, default=float))
    for n, m in result["models"].items():
        v = m["balanced_accuracy"]
        print(f"{n:>13s}: balanced accuracy {v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}], "
              f"accuracy {m['accuracy']['value']:.4f}")  # fmt: skip
    for k, d in result["paired"].items():
        b = d["balanced_accuracy"]
        print(f"{k:>28s}: {b['difference']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")


if __name__ == "__main__":
    main()
