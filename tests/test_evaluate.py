"""Evaluation (``skinacc evaluate`` in-process; two real processes where DDP is the point), the training
run's own test evaluation, and plot regeneration."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from skinacc.evaluation import PredictionLog
from skinacc.plots.evaluation import EVAL_PLOTS

from .conftest import command, run_two_process

FILES = ("metrics.json", "per_class.csv", "predictions.csv", *EVAL_PLOTS)


def _check_eval_dir(d, n_classes: int):
    for f in FILES:
        assert (d / f).is_file(), f
    for png in EVAL_PLOTS:
        w, h = Image.open(d / png).size
        assert w >= 400 and h >= 300, (png, w, h)
    m = json.loads((d / "metrics.json").read_text())
    for k in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "roc_auc_micro",
        "roc_auc_macro",
        "ece",
    ):
        assert 0 <= m[k] <= 1, k
    assert len(m["per_class"]) == n_classes and len(m["confusion_matrix"]) == n_classes
    rows = list(csv.DictReader((d / "predictions.csv").open()))
    assert len(rows) == m["num_samples"]
    assert {"path", "true", "predicted"} <= set(rows[0]) and sum(
        k.startswith("prob:") for k in rows[0]
    ) == n_classes
    return m


def test_training_run_evaluates_test_split_with_best_checkpoint(trained_run):
    m = _check_eval_dir(trained_run / "eval_test", 3)
    assert m["checkpoint"] == "best"
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(m["accuracy"])
    assert Image.open(trained_run / "training_curves.png").size[0] > 800
    hist = json.loads((trained_run / "history.json").read_text())
    assert all(0 <= r["val_balanced_accuracy"] <= 1 and "val_macro_f1" in r for r in hist)


@pytest.mark.slow
def test_evaluate_recipe_one_and_two_processes_agree(trained_run, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    # The clinical evaluation too: thresholds chosen on validation, CIs, gathered once either way.
    groups = tmp_path / "groups.yaml"
    groups.write_text("dark: [synthetic_dark_irregular]\n")
    clinical = ["--label_groups", str(groups), "--operating_point", "dark:sensitivity=0.9",
                "--abstain_coverage", "0.8", "--bootstrap", "300"]  # fmt: skip
    command(
        "evaluate",
        [
            "--model",
            str(trained_run),
            "--split",
            "validation",
            "--output_dir",
            str(one),
            "--num_workers",
            "0",
            "--batch_size",
            "4",
            *clinical,
        ],
    )
    printed = capsys.readouterr().out
    assert "balanced_accuracy" in printed and "precision" in printed
    m1 = _check_eval_dir(one, 3)
    assert m1["num_samples"] % 2 == 1, "a test size that does not divide by the world size"
    # Two ranks, and the contiguous (NCHW) layout instead of the default channels-last: the same results.
    run_two_process(
        "evaluate.py",
        [
            "--model",
            str(trained_run),
            "--split",
            "validation",
            "--output_dir",
            str(two),
            "--num_workers",
            "0",
            "--batch_size",
            "4",
            "--channels_last",
            "false",
            *clinical,
        ],
    )
    m2 = _check_eval_dir(two, 3)
    assert m2["num_processes"] == 2 and m2["num_samples"] == m1["num_samples"]
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_micro", "roc_auc_macro", "ece"):
        assert m2[k] == pytest.approx(m1[k], abs=1e-5), k
    assert m2["confusion_matrix"] == m1["confusion_matrix"]
    rows1 = {r["path"]: r for r in csv.DictReader((one / "predictions.csv").open())}
    rows2 = {r["path"]: r for r in csv.DictReader((two / "predictions.csv").open())}
    assert sorted(rows1) == sorted(rows2) and len(rows2) == m2["num_samples"], "each image exactly once"
    probs = [
        [[float(v) for k, v in rows[p].items() if k.startswith("prob:")] for p in sorted(rows1)]
        for rows in (rows1, rows2)
    ]
    assert np.allclose(probs[0], probs[1], atol=1e-5)
    c1, c2 = (json.loads((d / "clinical.json").read_text()) for d in (one, two))
    assert c1["bootstrap"]["images"] == c2["bootstrap"]["images"] == m1["num_samples"]
    o1, o2 = c1["operating_points"][0], c2["operating_points"][0]
    assert o1["threshold"] == pytest.approx(o2["threshold"], abs=1e-5)
    for k in ("sensitivity", "specificity", "referred"):
        assert o1[k] == pytest.approx(o2[k], abs=1e-6), k
    for k in ("accuracy", "balanced_accuracy"):
        assert c1["headline"][k] == pytest.approx(c2["headline"][k], abs=1e-6), k
    assert c1["label_groups"]["dark"]["auc"]["value"] == pytest.approx(
        c2["label_groups"]["dark"]["auc"]["value"], abs=1e-4
    )


def test_evaluate_flip_tta_wandb_and_unknown_classes(trained_run, tmp_path):
    from skinacc.wandb_offline import read_offline_run

    command(
        "evaluate",
        [
            "--model",
            str(trained_run),
            "--split",
            "validation",
            "--tta",
            "flip",
            "--output_dir",
            str(tmp_path / "tta"),
            "--num_workers",
            "0",
            "--report_to",
            "wandb",
            "--explain",
            "2",
        ],
    )
    assert json.loads((tmp_path / "tta" / "metrics.json").read_text())["tta"] == "flip"
    logged = read_offline_run(tmp_path / "tta" / "wandb")
    assert logged["job_type"] == "eval" and "validation/balanced_accuracy" in logged["summary"]
    assert "plots/confusion_matrix" in logged["summary"] and "validation/per_class" in logged["summary"]
    # --explain 2: a Grad-CAM grid per class, on disk and as W&B images
    from skinacc.data.synthetic import synthetic_class_names

    names = synthetic_class_names(3)
    safe = sorted("".join(c if c.isalnum() or c in "-_" else "_" for c in n) for n in names)
    assert sorted(p.stem for p in (tmp_path / "tta" / "explain").glob("*.png")) == safe
    assert all(f"explain/{n}" in logged["summary"] for n in names), sorted(logged["summary"])
    with pytest.raises(ValueError, match="unknown to --model(.|\n)*synthetic"):
        command(
            "evaluate",
            [
                "--model",
                str(trained_run),
                "--synthetic_num_classes",
                "5",
                "--output_dir",
                str(tmp_path / "x"),
            ],
        )


def test_plots_recipe_regenerates_everything(trained_run):
    for png in [trained_run / "training_curves.png", *[trained_run / "eval_test" / p for p in EVAL_PLOTS]]:
        png.unlink()
    command("plots", ["--run_dir", str(trained_run)])
    assert (trained_run / "training_curves.png").is_file()
    for p in EVAL_PLOTS:
        assert Image.open(trained_run / "eval_test" / p).size[0] >= 400


def test_evaluate_an_external_labelled_folder(trained_run, tmp_path, capsys):
    """Every image of an outside folder is test data; classes are matched by name, a missing class is
    fine (support 0), a single class folder is fine, and an unknown class folder is a clear error."""
    import shutil
    from pathlib import Path

    root = Path(json.loads((trained_run / "data_report.json").read_text())["root"])
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    clinic = tmp_path / "clinic"
    for c in names[1:]:  # lacks the model's first class, so folder ids and model ids differ
        shutil.copytree(root / c, clinic / c)
    n = sum(1 for _ in clinic.rglob("*.jpg"))
    # The dashed spelling --help offers: an external source as well (it re-split it as the run's own data)
    command("evaluate", ["--model", str(trained_run), "--data-dir", str(clinic), "--num_workers", "0"])
    out = trained_run / "eval_clinic"
    m = json.loads((out / "metrics.json").read_text())
    assert m["split"] == "all" and m["num_samples"] == n
    assert m["per_class"][names[0]]["support"] == 0 and names[0] in capsys.readouterr().out
    assert [m["per_class"][c]["support"] for c in names[1:]] == [
        len(list((clinic / c).glob("*.jpg"))) for c in names[1:]
    ]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert all(r["true"] == Path(r["path"]).parent.name for r in rows), "true labels matched by name"

    single = tmp_path / "single"
    shutil.copytree(root / names[0], single / names[0])
    command("evaluate", ["--model", str(trained_run), "--data_dir", str(single), "--num_workers", "0"])
    assert (
        json.loads((trained_run / "eval_single" / "metrics.json").read_text())["per_class"][names[0]][
            "support"
        ]
        > 0
    )

    (clinic / "eczema").mkdir()
    shutil.copy(next((clinic / names[1]).glob("*.jpg")), clinic / "eczema" / "x.jpg")
    with pytest.raises(ValueError, match=r"\['eczema'\] unknown to --model") as e:
        command("evaluate", ["--model", str(trained_run), "--data_dir", str(clinic)])
    assert str(clinic) in str(e.value)


class Crash(Exception):
    """What a kill leaves: the evaluation ends where it is."""


def test_evaluate_writes_as_it_goes_and_resumes(trained_run, tmp_path, monkeypatch, capsys):
    """Results go to disk batch by batch; an evaluation that dies after two batches (half a record
    written, as a kill in the middle of the third write leaves it) continues with --resume and ends with
    the reference's predictions and metrics."""
    base = ["--model", str(trained_run), "--split", "test", "--num_workers", "0", "--batch_size", "4"]
    ref = tmp_path / "ref"
    command("evaluate", [*base, "--output_dir", str(ref)])
    assert not (ref / "predictions.partial").exists(), "removed once the metrics are written"

    append, calls = PredictionLog.append, []

    def append_then_die(self, *a):
        append(self, *a)
        calls.append(1)
        if len(calls) == 2:
            with open(self.path, "ab") as f:
                f.write(b"\0" * 7)
            raise Crash

    monkeypatch.setattr(PredictionLog, "append", append_then_die)
    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        command("evaluate", [*base, "--output_dir", str(out)])
    monkeypatch.undo()
    assert (out / "predictions.partial").stat().st_size % 8 != 0 and not (out / "metrics.json").exists()
    with pytest.raises(ValueError, match=r"other settings \(tta\)"):
        command("evaluate", [*base, "--output_dir", str(out), "--resume", "--tta", "flip"])
    capsys.readouterr()
    command("evaluate", [*base, "--output_dir", str(out), "--resume"])
    assert "--resume: 8 images already evaluated" in capsys.readouterr().out
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    for k in ("num_samples", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece"):
        assert b[k] == pytest.approx(a[k], abs=1e-6), k
    rows = lambda d: sorted(csv.DictReader((d / "predictions.csv").open()), key=lambda r: r["path"])  # noqa: E731
    assert [r["path"] for r in rows(ref)] == [r["path"] for r in rows(out)]
    assert not (out / "predictions.partial").exists()


def test_evaluate_at_another_input_size(trained_run, tmp_path, capsys):
    """--image_size/--resize_size override the model's own sizes (the run was trained at 48 px with
    the seed's crop ratio, resize 54); without them the model's sizes are used, whatever the run's config."""
    base = ["--model", str(trained_run), "--split", "validation", "--num_workers", "0"]
    command("evaluate", [*base, "--output_dir", str(tmp_path / "own")])
    capsys.readouterr()
    command("evaluate", [*base, "--image_size", "64", "--output_dir", str(tmp_path / "big")])
    assert "evaluating at 64 px (resize 72)" in capsys.readouterr().out
    own, big = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("own", "big"))
    assert (own["image_size"], own["resize_size"]) == (48, 54)
    assert (big["image_size"], big["resize_size"]) == (64, 72)

    def probs(d: str) -> list[str]:
        return [r["prob:" + r["true"]] for r in csv.DictReader((tmp_path / d / "predictions.csv").open())]

    assert probs("own") != probs("big"), "the larger input reached the model"
    with pytest.raises(ValueError, match="--resize_size=40: must be >= the crop size 48"):
        command("evaluate", [*base, "--resize_size", "40", "--output_dir", str(tmp_path / "x")])
