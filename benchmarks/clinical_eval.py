"""The clinical evaluation of a trained dermoscopy model on the shared ISIC set (BENCHMARKS.md,
"Clinical evaluation"): evaluate with a validation-chosen 95%-sensitivity operating point for malignancy,
an abstention rule, subgroups, the embedded synthetic images as a (toy) shift and the stress test; then
compare the widths of the confidence intervals when whole lesions vs single images are resampled, and
time the bootstrap.

    python benchmarks/clinical_eval.py --model outputs/dermoscopy --out benchmarks/results/clinical_eval [--stress]
    python benchmarks/clinical_eval.py --model outputs/dermoscopy --skip_evaluate   # re-analyse only

The evaluation is ``skinacc evaluate`` under ``accelerate launch`` (accelerate_configs/cpu.yaml); the
comparison re-reads its predictions.csv and the set's labels.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", required=True, help="A dermoscopy run folder (trained on the shared ISIC set)."
    )
    ap.add_argument("--out", default="benchmarks/results/clinical_eval")
    ap.add_argument("--skip_evaluate", action="store_true", help="Only re-analyse an earlier evaluation.")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument(
        "--stress", action="store_true", help="Add the stress test (11 passes over the test split)."
    )
    a = ap.parse_args()
    out = Path(a.out)
    eval_dir = out / "eval_test"
    if not a.skip_evaluate:
        from skinacc.config import default_cache_dir
        from skinacc.data.synthetic import SyntheticSpec, generate_synthetic_dataset

        ood = generate_synthetic_dataset(SyntheticSpec(), default_cache_dir())
        cmd = [
            ACCELERATE,
            "launch",
            "--config_file",
            str(REPO / "accelerate_configs/cpu.yaml"),
            "-m",
            "skinacc",
            "evaluate",
            "--model",
            a.model,
            "--output_dir",
            str(eval_dir),
            "--disable_tqdm",
            "true",
            "--operating_point",
            "malignant:sensitivity=0.95",
            "--abstain_coverage",
            "0.9",
            "--subgroup_columns",
            "sex",
            "age:40,60",
            "anatom_site",
            "--ood_dir",
            str(ood),
            "--bootstrap",
            str(a.resamples),
            *(["--stress"] if a.stress else []),
        ]
        print(" ".join(cmd))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        print(f"evaluation: {time.perf_counter() - t0:.0f} s")
    compare_units(eval_dir, out, a.resamples)


def compare_units(eval_dir: Path, out: Path, n_boot: int) -> None:
    """CI widths with lesions vs images as the resampled unit, and the bootstrap's time."""
    from skinacc.clinical import ClinicalInputs, clinical_evaluation, resolve_label_groups
    from skinacc.metrics.report import read_predictions

    labels, probs, names, paths = read_predictions(eval_dir / "predictions.csv")
    with (ISIC / "labels.csv").open(newline="") as f:
        lesion = {r["path"]: r["lesion_group"] for r in csv.DictReader(f)}
    groups = [lesion[p] for p in paths]
    lg = resolve_label_groups("auto", names)
    rows = {}
    for unit, g in (("lesion", groups), ("image", None)):
        t0 = time.perf_counter()
        r = clinical_evaluation(
            ClinicalInputs(labels, probs, names, g, unit if g else None, lg), n_boot=n_boot
        )
        seconds = time.perf_counter() - t0
        pick = {
            "balanced_accuracy": r["headline"]["balanced_accuracy"],
            "accuracy": r["headline"]["accuracy"],
            "malignant_auc": r["label_groups"]["malignant"]["auc"],
        }
        rows[unit] = {
            "units": r["bootstrap"]["units"],
            "seconds": round(seconds, 2),
            **{k: v | {"width": v["ci_high"] - v["ci_low"]} for k, v in pick.items()},
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ci_by_unit.json").write_text(
        json.dumps({"images": len(labels), "resamples": n_boot, **rows}, indent=2)
    )
    for unit, r in rows.items():
        print(
            f"{unit:>6s} ({r['units']} units, {r['seconds']:.2f} s): balanced accuracy width "
            f"{r['balanced_accuracy']['width']:.3f}, malignant AUC width {r['malignant_auc']['width']:.3f}"
        )
    t0 = time.perf_counter()
    from skinacc.clinical import bootstrap, group_ids
    from skinacc.clinical.weighted import confusion, from_confusion

    pred = probs.argmax(1)
    bootstrap(
        lambda w: from_confusion(confusion(w, labels, pred, len(names))),
        group_ids(groups, len(labels)),
        n_boot,
    )
    print(
        f"bootstrap of balanced accuracy alone: {time.perf_counter() - t0:.2f} s for {n_boot} resamples of {len(labels)} images"
    )


if __name__ == "__main__":
    main()
