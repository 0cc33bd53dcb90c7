"""Test-time augmentation over several input sizes: does averaging sizes beat the best single size?

Scores trained runs (e.g. the dermoscopy recipe's, from ``isic8_quality.py``) with ``recipes/evaluate.py``
on their own test split at each ``--sizes`` (the model's TTA and temperature as stored), then averages
the per-image probabilities of every combination of sizes and reports balanced accuracy per run and
mean ± sd. Evaluations already in ``--work`` are reused.

    python benchmarks/isic8_multiscale.py --runs /tmp/isic8q/dermoscopy-s0 /tmp/isic8q/dermoscopy-s1 \\
        /tmp/isic8q/dermoscopy-s2 --sizes 160 192 224 --work /tmp/ms --out benchmarks/results/isic8_multiscale
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skinacc.metrics import compute_all  # noqa: E402

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def evaluate_at(run: Path, size: int, work: Path) -> Path:
    """``evaluate.py`` on ``run``'s test split at ``size`` px; returns the results folder."""
    out = work / f"{run.name}-{size}"
    if not (out / "metrics.json").is_file():
        cmd = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / "cpu.yaml")]
        cmd += [str(REPO / "recipes" / "evaluate.py"), "--model", str(run), "--image_size", str(size)]
        cmd += ["--output_dir", str(out), "--report_to", "none"]
        env = {**os.environ, "WANDB_MODE": "disabled"}
        with (work / f"{run.name}-{size}.log").open("w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return out


def read_predictions(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names, true label ids and probabilities of ``predictions.csv``, rows sorted by path."""
    rows = sorted(csv.DictReader((folder / "predictions.csv").open()), key=lambda r: r["path"])
    names = [k[5:] for k in rows[0] if k.startswith("prob:")]
    labels = np.array([names.index(r["true"]) for r in rows])
    probs = np.array([[float(r[f"prob:{c}"]) for c in names] for r in rows])
    return names, labels, probs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="skinacc run folders")
    p.add_argument("--sizes", nargs="+", type=int, default=[160, 192, 224])
    p.add_argument("--work", default="/tmp/isic8_multiscale")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "isic8_multiscale"))
    args = p.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[float]] = {}
    for run in map(Path, args.runs):
        preds = {s: read_predictions(evaluate_at(run, s, work)) for s in args.sizes}
        names, labels, _ = preds[args.sizes[0]]
        for r in range(1, len(args.sizes) + 1):
            for combo in itertools.combinations(args.sizes, r):
                probs = np.mean([preds[s][2] for s in combo], axis=0)
                m = compute_all(labels, probs, names)
                scores.setdefault("+".join(map(str, combo)), []).append(m["balanced_accuracy"])
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        k: {"per_run": v, "mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
        for k, v in scores.items()
    }
    (out / "summary.json").write_text(json.dumps({"runs": args.runs, "sizes": summary}, indent=2))
    lines = ["| sizes (px) averaged | " + " | ".join(Path(r).name for r in args.runs) + " | mean ± sd |"]
    lines.append("|---|" + "---:|" * (len(args.runs) + 1))
    for k, s in summary.items():
        cells = " | ".join(f"{v:.3f}" for v in s["per_run"])
        lines.append(f"| {k} | {cells} | {s['mean']:.3f} ± {s['sd']:.3f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
