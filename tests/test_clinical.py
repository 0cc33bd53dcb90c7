"""Clinical evaluation: weighted metrics against scikit-learn and the ISIC challenge scoring package,
lesion-resampled CIs, operating points frozen on validation, subgroups, abstention, shift; and the
same through training's final test, ``skinacc evaluate``, ``predict``, the web demo and the model card."""

import csv
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from skinacc.clinical import (
    ClinicalInputs,
    DecisionRules,
    bootstrap,
    choose_operating_point,
    clinical_evaluation,
    coverage_threshold,
    group_ids,
    paired_bootstrap,
    resolve_label_groups,
    risk_coverage,
)
from skinacc.clinical.shift import PERTURBATIONS, ood_separation, perturb
from skinacc.clinical.subgroups import assign_subgroups, parse_subgroup_spec
from skinacc.clinical.weighted import (
    auc,
    binary_at_threshold,
    confusion,
    expected_calibration_error,
    from_confusion,
    partial_auc,
    rates_at,
    roc,
)
from skinacc.config import ConfigError
from skinacc.metrics import compute_all

from .conftest import TINY, command, train

ISIC_NAMES = [
    "actinic keratosis",
    "basal cell carcinoma",
    "dermatofibroma",
    "melanoma",
    "nevus",
    "pigmented benign keratosis",
    "squamous cell carcinoma",
    "vascular lesion",
]


def _predictions(n=400, c=8, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    if ties:  # rounded probabilities: tied scores, as real models give
        p = np.round(p, 2) + 1e-9
        p /= p.sum(1, keepdims=True)
    return y, p


def test_weighted_metrics_with_unit_weights_are_scikit_learns():
    y, p = _predictions()
    ones = np.ones((1, len(y)))
    ref = compute_all(y, p, ISIC_NAMES)
    m = from_confusion(confusion(ones, y, p.argmax(1), 8))
    for k in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert m[k][0] == pytest.approx(ref[k], abs=1e-12), k
    assert m["recall"][0] == pytest.approx([ref["per_class"][n]["recall"] for n in ISIC_NAMES])
    assert expected_calibration_error(ones, y, p)[0] == pytest.approx(ref["ece"], abs=1e-12)
    pos, s = np.isin(y, [0, 1, 3, 6]), p[:, [0, 1, 3, 6]].sum(1)
    assert auc(roc(ones, pos, s))[0] == pytest.approx(skm.roc_auc_score(pos, s), abs=1e-12)
    # Integer weights are repeated images.
    w = np.random.default_rng(1).integers(0, 3, len(y)).astype(float)
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    assert auc(roc(w[None], pos, s))[0] == pytest.approx(skm.roc_auc_score(pos[rep], s[rep]), abs=1e-12)
    assert from_confusion(confusion(w[None], y, p.argmax(1), 8))["balanced_accuracy"][0] == pytest.approx(
        skm.balanced_accuracy_score(y[rep], p.argmax(1)[rep])
    )


def test_partial_auc_is_isic_2024s_and_auc_above_sensitivity_isic_2019s():
    """Both "area above 80% sensitivity" figures: ISIC 2024's pAUC (its metric flips labels and scores
    and integrates to FPR 0.2) and ISIC 2019's, as isic-challenge-scoring computes it."""
    y, p = _predictions(ties=True)
    pos, s = np.isin(y, [0, 1, 3, 6]), p[:, [0, 1, 3, 6]].sum(1)
    pauc, above = partial_auc(roc(np.ones((1, len(y))), pos, s), 0.8)
    # ISIC 2024's definition, computed its way.
    fpr, tpr, _ = skm.roc_curve(~pos, -s)
    stop = np.searchsorted(fpr, 0.2, "right")
    x = np.append(fpr[:stop], 0.2)
    yy = np.append(tpr[:stop], np.interp(0.2, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1]))
    assert pauc[0] == pytest.approx(skm.auc(x, yy), abs=1e-12)
    assert 0 < pauc[0] < 0.2
    # ISIC 2019's figure is the 2024 one plus the rectangle below 80% sensitivity.
    f, t = skm.roc_curve(pos, s)[:2]
    f80 = np.interp(0.8, t, f)
    assert above[0] == pytest.approx(pauc[0] + 0.8 * (1 - f80), abs=1e-9)
    perfect = partial_auc(roc(np.ones((1, 4)), np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.8, 0.9])))
    assert perfect[0][0] == pytest.approx(0.2) and perfect[1][0] == pytest.approx(1.0)


def test_parity_with_isic_challenge_scoring():
    pd = pytest.importorskip("pandas")
    isic = pytest.importorskip("isic_challenge_scoring.metrics")
    y, p = _predictions(ties=False)
    w = pd.Series(np.ones(len(y)))
    truth = pd.DataFrame(np.eye(8)[y], columns=ISIC_NAMES)
    ours = compute_all(y, p, ISIC_NAMES)
    assert isic.balanced_multiclass_accuracy(truth, pd.DataFrame(p, columns=ISIC_NAMES), w) == pytest.approx(
        ours["balanced_accuracy"], abs=1e-12
    )
    pos, s = np.isin(y, [0, 1, 3, 6]), p[:, [0, 1, 3, 6]].sum(1)
    curve = roc(np.ones((1, len(y))), pos, s)
    t, sc = pd.Series(pos.astype(float)), pd.Series(s)
    assert isic.auc(t, sc, w) == pytest.approx(auc(curve)[0], abs=1e-12)
    assert isic.auc_above_sensitivity(t, sc, w, 0.8) == pytest.approx(partial_auc(curve, 0.8)[1][0], abs=1e-9)
    for k, name in enumerate(ISIC_NAMES):  # per-class AUC, as the challenge reports it
        assert isic.auc(truth[name], pd.Series(p[:, k]), w) == pytest.approx(
            ours["per_class"][name]["roc_auc"], abs=1e-12
        )


def test_lesion_resampling_widens_intervals_and_is_seeded():
    """Five photographs per lesion: resampling images treats them as independent and understates the
    spread; resampling lesions does not. The same seed gives the same intervals."""
    rng = np.random.default_rng(0)
    lesions = 100
    y_l = rng.integers(0, 4, lesions)
    right_l = rng.random(lesions) < 0.7  # a lesion is classified right or wrong in all its photographs
    y = np.repeat(y_l, 5)
    pred = np.where(np.repeat(right_l, 5), y, (y + 1) % 4)
    gid = group_ids(np.repeat([f"L{i}" for i in range(lesions)], 5), len(y))

    def fn(w):
        return from_confusion(confusion(w, y, pred, 4))

    by_lesion = bootstrap(fn, gid, 1000, seed=3)["accuracy"]
    by_image = bootstrap(fn, group_ids(None, len(y)), 1000, seed=3)["accuracy"]
    assert by_lesion.value == by_image.value == pytest.approx(right_l.mean())
    assert (by_lesion.high - by_lesion.low) > 1.8 * (by_image.high - by_image.low)
    assert bootstrap(fn, gid, 1000, seed=3)["accuracy"] == by_lesion
    # Blank group names stand alone, not pooled.
    assert len(set(group_ids(["a", "a", "", None], 4))) == 3


def test_paired_bootstrap_of_a_model_against_itself_and_a_worse_one():
    y, p = _predictions(ties=False)
    gid = group_ids(None, len(y))

    def metrics(probs):
        return lambda w: from_confusion(confusion(w, y, probs.argmax(1), 8))

    same = paired_bootstrap(metrics(p), metrics(p), gid, 300)
    assert (
        same["accuracy"]["difference"] == 0 and same["accuracy"]["ci_low"] == same["accuracy"]["ci_high"] == 0
    )
    noisy = np.random.default_rng(5).dirichlet(np.ones(8), len(y))
    diff = paired_bootstrap(metrics(p), metrics(noisy), gid, 500)["accuracy"]
    assert diff["ci_low"] > 0 and diff["share_above_zero"] > 0.95


def test_operating_point_is_chosen_on_validation_and_frozen():
    names = ISIC_NAMES
    groups = resolve_label_groups("auto", names)
    assert [(g.name, g.members(names)) for g in groups] == [
        ("malignant", ["actinic keratosis", "basal cell carcinoma", "melanoma", "squamous cell carcinoma"])
    ]
    yv, pv = _predictions(seed=1)
    op = choose_operating_point("malignant:sensitivity=0.95", groups, yv, pv, names)
    pos, s = np.isin(yv, groups[0].classes), pv[:, list(groups[0].classes)].sum(1)
    refer = s >= op.threshold
    assert refer[pos].mean() >= 0.95 and op.chosen["sensitivity"] == pytest.approx(refer[pos].mean())
    # No higher threshold reaches the target: the chosen one has the best specificity.
    at = s[s >= op.threshold].min()
    assert all((s[pos] >= t).mean() < 0.95 for t in np.unique(s[s > at]))
    # Brute force over thresholds agrees with the vectorised curve; the stored threshold lies midway
    # between that score and the next lower one (the same images referred, robust to rounding).
    spec, thr = rates_at(roc(np.ones((1, len(yv))), pos, s), 0.95, "sensitivity")
    assert spec[0] == pytest.approx(op.chosen["specificity"])
    assert op.threshold == pytest.approx((thr[0] + s[s < thr[0]].max()) / 2)
    # Applied to other data unchanged.
    yt, pt = _predictions(seed=2)
    rules = DecisionRules([op])
    again = DecisionRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    d = again.decide(pt[:5], names)
    pt_s = pt[:5, list(groups[0].classes)].sum(1)
    assert [r["malignant"]["decision"] == "refer" for r in d] == list(pt_s >= op.threshold)
    at = binary_at_threshold(
        np.ones((1, len(yt))),
        np.isin(yt, groups[0].classes),
        pt[:, list(groups[0].classes)].sum(1),
        op.threshold,
    )
    assert (
        0 <= at["sensitivity"][0] <= 1
        and at["referred"][0] == (pt[:, list(groups[0].classes)].sum(1) >= op.threshold).sum()
    )
    with pytest.raises(ValueError, match="no label group 'cancer'"):
        choose_operating_point("cancer:sensitivity=0.9", groups, yv, pv, names)
    with pytest.raises(ValueError, match="expected <group>:sensitivity"):
        choose_operating_point("malignant@0.9", groups, yv, pv, names)


def test_label_groups_from_a_file_and_their_errors(tmp_path):
    assert resolve_label_groups("auto", ["synthetic_a", "synthetic_b"]) == []
    assert resolve_label_groups("none", ISIC_NAMES) == []
    with pytest.raises(ValueError, match="include none of the ISIC"):
        resolve_label_groups("isic", ["a", "b"])
    # HAM10000's codes are the ISIC classes too.
    assert resolve_label_groups("auto", ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"])[0].classes == (
        0,
        1,
        4,
    )
    f = tmp_path / "groups.yaml"
    f.write_text("melanocytic: [melanoma, nevus]\nbad: [melanoma, psoriasis]\n")
    with pytest.raises(
        ValueError, match=r"groups.yaml.*unknown class\(es\) \['psoriasis'\].*The model's classes"
    ):
        resolve_label_groups(str(f), ISIC_NAMES)
    f.write_text("melanocytic: [Melanoma, nevus]\n")
    assert resolve_label_groups(str(f), ISIC_NAMES)[0].classes == (3, 4)
    with pytest.raises(FileNotFoundError, match="--label_groups='nope.yaml'"):
        resolve_label_groups("nope.yaml", ISIC_NAMES)


def test_subgroups_selective_and_shift_pieces():
    names, order = assign_subgroups(parse_subgroup_spec("age:40,60"), ["35", "40", "", "75", None, "59"])
    assert names.tolist() == ["<40", "40-60", "missing", ">=60", "missing", "40-60"]
    assert order == ["<40", "40-60", ">=60", "missing"]
    names, order = assign_subgroups(parse_subgroup_spec("sex"), ["male", "female", "", "male"])
    assert order == ["female", "male", "missing"]
    with pytest.raises(ValueError, match="not numeric"):
        assign_subgroups(parse_subgroup_spec("sex:1,2"), ["male", "female"])
    with pytest.raises(ValueError, match="expected <column> or <column>:<edge>"):
        parse_subgroup_spec("age:young")
    unc = np.array([0.1, 0.2, 0.2, 0.3, 0.9])
    assert (unc <= coverage_threshold(unc, 0.6)).mean() >= 0.6
    correct = np.array([1, 1, 1, 1, 0])
    assert risk_coverage(correct, unc)["risk"][-2] == 0 and risk_coverage(correct, unc)[
        "aurc"
    ] == pytest.approx(0.2 / 5)
    sep = ood_separation(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6]))
    assert sep["auroc"] == 1.0 and sep["fpr_at_95_tpr"] == 0.0
    x = (np.random.default_rng(0).random((2, 3, 32, 32)) * 255).astype(np.uint8)
    import torch

    x = torch.from_numpy(x)
    for name in PERTURBATIONS:
        y = perturb(x, name)
        assert y.dtype == torch.uint8 and y.shape == x.shape, name
    assert torch.equal(perturb(perturb(x, "hflip"), "hflip"), x)


def test_clinical_report_with_subgroups_and_abstention():
    y, p = _predictions(n=300)
    rng = np.random.default_rng(0)
    groups = [f"L{i // 3}" for i in range(300)]
    meta = {"sex": rng.choice(["male", "female", ""], 300), "age": rng.integers(20, 90, 300).astype(str)}
    lg = resolve_label_groups("auto", ISIC_NAMES)
    op = choose_operating_point("malignant:sensitivity=0.9", lg, *_predictions(n=300, seed=9), ISIC_NAMES)
    from skinacc.clinical import choose_abstention, uncertainty

    ab = choose_abstention(uncertainty(_predictions(seed=9)[1]), "max_prob", 0.8)
    x = ClinicalInputs(y, p, ISIC_NAMES, groups, "lesion_group", lg, DecisionRules([op], ab), meta)
    r = clinical_evaluation(x, n_boot=200, subgroup_columns=["sex", "age:50"], min_subgroup_size=120)
    assert r["bootstrap"]["units"] == 100 and r["bootstrap"]["unit"] == "lesion_group"
    for v in (*r["headline"].values(), *r["per_class_recall"].values()):
        assert v["ci_low"] <= v["value"] <= v["ci_high"]
    g = r["label_groups"]["malignant"]
    assert 0 <= g["pauc_above_tpr_0.8"]["value"] <= 0.2 and g["positives"] == np.isin(y, [0, 1, 3, 6]).sum()
    o = r["operating_points"][0]
    assert o["sensitivity_minus_target"] == pytest.approx(o["sensitivity"]["value"] - 0.9)
    assert "abstention" in r["selective"] and 0 < r["selective"]["abstention"]["coverage"]["value"] <= 1
    by_sex = r["subgroups"]["sex"]
    assert [s["subgroup"] for s in by_sex] == ["female", "male", "missing"]
    assert sum(s["images"] for s in by_sex) == 300 and all(s["warning"] for s in by_sex)
    assert [s["subgroup"] for s in r["subgroups"]["age:50"]] == ["<50", ">=50"]
    # A stored operating point applies whatever label groups are asked for now (its classes are stored).
    bare = ClinicalInputs(y, p, ISIC_NAMES, groups, "lesion_group", [], DecisionRules([op]))
    again = clinical_evaluation(bare, n_boot=50)["operating_points"][0]
    assert (
        again["sensitivity"]["value"] == o["sensitivity"]["value"]
        and again["referred"]["value"] == o["referred"]["value"]
    )
    with pytest.raises(ValueError, match=r"no column 'site'.*columns: \['age', 'sex'\]"):
        clinical_evaluation(x, n_boot=10, subgroup_columns=["site"])


def test_clinical_options_are_validated_together():
    from skinacc.config import CONFIG_TYPES, parse_config

    with pytest.raises(ConfigError) as e:
        parse_config(
            CONFIG_TYPES,
            [*TINY, "--operating_point", "malignant:sens=0.9", "--subgroup_columns", "age:old", "--ci_level", "1",
             "--abstain_coverage", "0"],
        )  # fmt: skip
    text = str(e.value)
    for part in (
        "--operating_point='malignant:sens=0.9'",
        "--subgroup_columns='age:old'",
        "--ci_level=1.0",
        "--abstain_coverage=0.0",
    ):
        assert part in text, part
    with pytest.raises(
        ConfigError, match="--operating_point is chosen on the validation split, which --final_fit"
    ):
        parse_config(
            CONFIG_TYPES,
            [*TINY, "--operating_point", "m:sensitivity=0.9", "--final_fit", "--scheduler", "cosine"],
        )


def test_sample_columns_join_a_folders_metadata(tmp_path):
    import datasets

    from skinacc.data.columns import sample_columns

    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    for i in range(3):
        (root / "a" / f"{i}.jpg").write_bytes(b"x")
    (root / "labels.csv").write_text("path,sex,age\na/0.jpg,male,40\na/1.jpg,female,\na/2.jpg,,70\n")
    table = datasets.Dataset.from_dict(
        {"sample_id": [10, 11, 12], "path": ["a/0.jpg", "a/1.jpg", "a/2.jpg"], "group": ["x", "y", "x"]}
    )
    got = sample_columns(table, [12, 10], ["group", "sex", "age"], root=str(root))
    assert got == {"group": ["x", "x"], "sex": ["", "male"], "age": ["70", "40"]}
    with pytest.raises(ValueError, match=r"column\(s\) \['site'\] not in metadata file"):
        sample_columns(table, [10], ["site"], root=str(root))


@pytest.mark.slow
def test_final_test_predict_demo_evaluate_and_card_apply_the_rules(tmp_path, capsys):
    """A tiny run chooses an operating point and an abstention threshold on validation, stores them with
    the model, and every consumer applies the same frozen thresholds."""
    groups = tmp_path / "groups.yaml"
    groups.write_text("dark: [synthetic_dark_irregular, synthetic_red_vascular]\n")
    out = tmp_path / "run"
    train([*TINY, "--epochs", "2", "--output_dir", str(out), "--tta", "flip", "--label_groups", str(groups),
           "--operating_point", "dark:sensitivity=0.9", "--abstain_coverage", "0.8", "--bootstrap", "200"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "decision rules stored with the model" in printed and "clinical evaluation" in printed
    cfg = json.loads((out / "best" / "config.json").read_text())["skinacc"]["decision"]
    op = cfg["operating_points"][0]
    assert op["group"] == "dark" and op["chosen_on"] == "validation" and op["chosen"]["sensitivity"] >= 0.9
    report = json.loads((out / "eval_test" / "clinical.json").read_text())
    assert report["operating_points"][0]["threshold"] == op["threshold"]
    for f in ("roc_dark.png", "risk_coverage.png"):
        assert (out / "eval_test" / f).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_clinical/dark/auc"] == report["label_groups"]["dark"]["auc"]["value"]

    # predict: the decision columns, from the same threshold.
    from skinacc.metrics.report import read_predictions

    _, probs, names, rel = read_predictions(out / "eval_test" / "predictions.csv")
    root = json.loads((out / "data_report.json").read_text())["root"]
    paths = [f"{root}/{p}" for p in rel]
    pred_csv = tmp_path / "p.csv"
    command(
        "predict",
        ["--model", str(out), "--inputs", *paths[:6], "--output", str(pred_csv), "--num_workers", "0"],
    )
    assert "not a medical device" in capsys.readouterr().out
    rows = list(csv.DictReader(pred_csv.open()))
    cols = [names.index(c) for c in op["classes"]]
    for r, p in zip(rows, probs[:6]):
        assert float(r["p_dark"]) == pytest.approx(p[cols].sum(), abs=1e-5)
        assert r["dark_decision"] == (
            "refer" if p[cols].sum() >= op["threshold"] else "no referral suggested"
        )
        assert r["uncertain"] in ("0", "1")

    # The web demo's classifier shows the same decision.
    from skinacc.artifact import load_model
    from skinacc.demo import ImageClassifier, decision_markdown

    clf = ImageClassifier(load_model(str(out)), explain=False)
    try:
        d = clf(paths[0]).decision
    finally:
        clf.close()
    assert d["dark"]["probability"] == pytest.approx(probs[0][cols].sum(), abs=1e-5)
    assert "not a medical device" in decision_markdown(d)

    # evaluate applies the stored rules unchanged, adds the stress report and an outside folder.
    ood = tmp_path / "ood"
    ood.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)).save(
            ood / f"{i}.png"
        )
    command("evaluate", ["--model", str(out), "--output_dir", str(tmp_path / "ev"), "--stress", "--ood_dir", str(ood),
                         "--num_workers", "0", "--bootstrap", "200"])  # fmt: skip
    ev = json.loads((tmp_path / "ev" / "clinical.json").read_text())
    assert ev["operating_points"][0]["threshold"] == op["threshold"]
    assert ev["operating_points"][0]["sensitivity"] == report["operating_points"][0]["sensitivity"]
    assert set(ev["shift"]["stress"]["flip_rate"]) == set(PERTURBATIONS)
    assert ev["shift"]["stress"]["flip_rate"]["hflip"] == 0.0  # flip TTA averages the mirror in
    assert ev["shift"]["ood"]["ood_images"] == 4 and 0 <= ev["shift"]["ood"]["auroc"] <= 1

    from skinacc.model_card import run_model_card

    card = run_model_card(out)
    assert "## Clinical evaluation (test split)" in card and "refer when P >=" in card

    # A paired comparison of the run with itself: every difference is exactly 0.
    from skinacc.compare import paired_comparison

    rows = paired_comparison([str(out), str(out)], "test", 100)
    assert rows and all(r["difference"] == 0 for r in rows)


def test_a_run_refuses_clinical_options_its_data_cannot_serve(tmp_path):
    """Before training, not after it: an unknown group for the operating point, a subgroup column the
    data lack, TTA disagreement without TTA."""
    groups = tmp_path / "groups.yaml"
    groups.write_text("dark: [synthetic_dark_irregular]\n")
    base = [*TINY, "--epochs", "1", "--label_groups", str(groups)]
    with pytest.raises(
        ValueError,
        match=r"--operating_point='darker:sensitivity=0.9': no label group 'darker'; groups: \['dark'\]",
    ):
        train([*base, "--output_dir", str(tmp_path / "a"), "--operating_point", "darker:sensitivity=0.9"])
    with pytest.raises(ValueError, match=r"--subgroup_columns: column\(s\) \['sex'\] not in the data"):
        train([*base, "--output_dir", str(tmp_path / "b"), "--subgroup_columns", "sex"])
    assert not (tmp_path / "a" / "checkpoints").exists() and not (tmp_path / "b" / "checkpoints").exists()
    from skinacc.config import CONFIG_TYPES, parse_config

    with pytest.raises(ConfigError, match="--abstain_score tta_disagreement needs views to disagree"):
        parse_config(CONFIG_TYPES, [*TINY, "--abstain_score", "tta_disagreement"])
