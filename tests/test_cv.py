"""Grouped stratified K-fold cross-validation: the folds, K ordinary resumable run folders, the
out-of-fold predictions and report; a final fit on every image (``--test_size 0 --final_fit``)."""

import json
import shutil

import numpy as np
import pytest

from skinacc.config import ConfigError
from skinacc.data.splits import cv_split, split_indices

from .conftest import TINY, run_two_process, train

CV = [*TINY, "--epochs", "1", "--bootstrap", "100", "--synthetic_num_classes", "3"]


def test_cv_folds_partition_the_non_test_images_by_group_and_class():
    rng = np.random.default_rng(0)
    groups = np.array([f"L{i // 3}" for i in range(300)], dtype=object)  # 3 photographs per lesion
    labels = np.repeat(rng.integers(0, 4, 100), 3)
    folds = [cv_split(labels, 0.2, 5, k, seed=7, groups=groups) for k in range(5)]
    test = split_indices(labels, 0.2, 0.1, 7, groups)["test"]
    held = np.concatenate([f["validation"] for f in folds])
    assert all(np.array_equal(f["test"], test) for f in folds), "the same test split as without CV"
    assert sorted(held.tolist()) == sorted(set(range(300)) - set(test.tolist())), "each image held out once"
    for f in folds:
        assert not set(f["train"]) & set(f["validation"]) and not set(f["train"]) & set(test)
        assert not set(groups[f["train"]]) & set(groups[f["validation"]]), "a lesion never spans two sides"
        assert set(labels[f["validation"]]) == set(range(4)), "every class in every fold"
    assert np.array_equal(cv_split(labels, 0.2, 5, 2, 7, groups)["validation"], folds[2]["validation"])
    assert not np.array_equal(cv_split(labels, 0.2, 5, 2, 8, groups)["validation"], folds[2]["validation"])
    whole = cv_split(labels, 0.0, 3, 0, 7, groups)
    assert len(whole["test"]) == 0 and len(whole["train"]) + len(whole["validation"]) == 300
    with pytest.raises(ValueError, match="--cv_folds=5: only 4 groups"):
        cv_split(labels[:12], 0.0, 5, 0, 7, groups[:12])


def test_cross_validation_runs_resumable_folds_and_scores_out_of_fold_once(tmp_path, capsys):
    out = tmp_path / "cv"
    report = train([*CV, "--cv_folds", "3", "--test_size", "0.2", "--output_dir", str(out)])
    assert report["folds"] == 3 and len(report["per_fold"]) == 3
    data = json.loads((out / "fold_0" / "data_report.json").read_text())
    n_outside_test = sum(data["split_sizes"].values()) - data["split_sizes"]["test"]
    assert report["images"] == n_outside_test == sum(r["images"] for r in report["per_fold"])
    ids = set()
    for k in range(3):
        d = out / f"fold_{k}"
        cfg = json.loads((d / "run_config.json").read_text())
        assert cfg["data"]["cv_fold"] == k and cfg["data"]["cv_folds"] == 3
        assert not (d / "eval_test").exists(), "the test split waits for the final model"
        with np.load(d / "eval_validation" / "oof.npz") as z:
            assert not ids & set(z["sample_id"].tolist())
            ids |= set(z["sample_id"].tolist())
    assert len(ids) == n_outside_test
    cv = json.loads((out / "cv_report.json").read_text())
    assert set(cv["fold_mean_sd"]) >= {"accuracy", "balanced_accuracy"} and cv["final_fit_epochs"] == 1
    oof = json.loads((out / "oof" / "metrics.json").read_text())
    assert (
        oof["num_samples"] == n_outside_test
        and cv["out_of_fold"]["balanced_accuracy"] == oof["balanced_accuracy"]
    )
    assert (out / "oof" / "clinical.json").is_file()

    # A fold is an ordinary run: the same as training that fold alone.
    alone = tmp_path / "alone"
    train([*CV, "--cv_folds", "3", "--cv_fold", "1", "--test_size", "0.2", "--output_dir", str(alone)])
    h1 = json.loads((out / "fold_1" / "history.json").read_text())
    h2 = json.loads((alone / "history.json").read_text())
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2] and [r["val_loss"] for r in h1] == [
        r["val_loss"] for r in h2
    ]

    # Running the command again keeps finished folds; a fold stopped after its checkpoint resumes.
    before = (out / "fold_0" / "summary.json").stat().st_mtime_ns
    shutil.rmtree(out / "fold_2" / "eval_validation")
    (out / "fold_2" / "summary.json").unlink()
    capsys.readouterr()
    again = train(
        [
            *CV,
            "--cv_folds",
            "3",
            "--test_size",
            "0.2",
            "--output_dir",
            str(out),
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    printed = capsys.readouterr().out
    assert (
        "fold 0: finished earlier" in printed
        and "fold 1: finished earlier" in printed
        and "resumed from" in printed
    )
    assert (out / "fold_0" / "summary.json").stat().st_mtime_ns == before
    assert again["out_of_fold"] == report["out_of_fold"], "the resumed fold predicts as before"


def test_cv_and_test_size_zero_options_are_checked():
    from skinacc.config import CONFIG_TYPES, parse_config

    with pytest.raises(ConfigError, match="--test_size=0 leaves no test split"):
        parse_config(CONFIG_TYPES, [*TINY, "--test_size", "0"])
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG_TYPES, [*TINY, "--cv_folds", "1", "--cv_fold", "3"])
    assert "--cv_folds=1: must be 0 (off) or at least 2" in str(e.value) and "--cv_fold=3" in str(e.value)
    with pytest.raises(ConfigError, match="--cv_folds and --final_fit"):
        parse_config(CONFIG_TYPES, [*TINY, "--cv_folds", "3", "--final_fit", "--scheduler", "cosine"])


def test_final_fit_on_every_image(tmp_path):
    out = tmp_path / "all"
    summary = train(
        [
            *TINY,
            "--final_fit",
            "--test_size",
            "0",
            "--scheduler",
            "cosine",
            "--epochs",
            "1",
            "--output_dir",
            str(out),
        ]
    )
    sizes = json.loads((out / "data_report.json").read_text())["split_sizes"]
    resolved = json.loads((out / "run_config.json").read_text())["resolved"]
    assert sizes["test"] == 0 and resolved["train_images"] == sum(sizes.values())
    assert "test_images" not in summary and (out / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_cross_validation_under_two_processes(tmp_path):
    out = tmp_path / "cv2"
    run_two_process("train.py", [*CV, "--cv_folds", "2", "--test_size", "0", "--output_dir", str(out)])
    cv = json.loads((out / "cv_report.json").read_text())
    sizes = json.loads((out / "fold_0" / "data_report.json").read_text())["split_sizes"]
    assert cv["images"] == sum(sizes.values()) == sum(r["images"] for r in cv["per_fold"])
    for k in range(2):
        with np.load(out / f"fold_{k}" / "eval_validation" / "oof.npz") as z:
            assert len(set(z["sample_id"].tolist())) == len(z["sample_id"]), "each held-out image once"
            assert z["logits"].shape[:2] == (len(z["sample_id"]), 1), (
                "every view's logits, for the OOF temperature"
            )
    assert cv["oof_temperature"] > 0
    spec = json.loads((out / "ensemble" / "ensemble.json").read_text())
    assert [m["path"] for m in spec["members"]] == ["members/fold_0", "members/fold_1"]
