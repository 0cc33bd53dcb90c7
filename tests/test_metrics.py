import numpy as np
import pytest
from sklearn import metrics as skm

from skinacc.metrics import SKIN_METRICS_PATH, compute_all, load_skin_metrics
from skinacc.metrics.functional import expected_calibration_error, roc_auc, roc_curve


def _random(n: int, c: int, seed: int, skew: float = 2.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += skew * rng.random(n)  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


@pytest.mark.parametrize("seed,c", [(0, 2), (1, 5), (2, 12), (3, 35)])
def test_against_scikit_learn(seed, c):
    y, p = _random(600, c, seed)
    m = compute_all(y, p, top_k=(3, 5))
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    for k in (3, 5):
        if k < c:
            assert m[f"top_{k}_accuracy"] == pytest.approx(
                skm.top_k_accuracy_score(y, p, k=k, labels=range(c))
            )
    onehot = np.eye(c)[y]
    assert m["roc_auc_micro"] == pytest.approx(skm.roc_auc_score(onehot, p, average="micro"))
    if c > 2:
        assert m["roc_auc_macro"] == pytest.approx(
            skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
        )
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
    per = m["per_class"]
    for i in range(c):
        r = per[str(i)]
        assert (r["precision"], r["recall"], r["f1"], r["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i])
        )
        assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(onehot[:, i], p[:, i]))
    assert np.array_equal(np.array(m["confusion_matrix"]), skm.confusion_matrix(y, pred, labels=range(c)))


def test_auc_ties_and_curve_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    fpr, tpr = roc_curve(y, s)
    f2, t2, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, f2) and np.allclose(tpr, t2)


def test_ece_by_hand():
    # Two bins used: conf 0.95 (2 samples, 1 right) and 0.55 (2 samples, 2 right).
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    expected = (2 * abs(0.5 - 0.95) + 2 * abs(1.0 - 0.55)) / 4
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected)


def test_class_absent_from_labels():
    y, p = _random(200, 4, 7)
    y[y == 3] = 0  # class 3 never occurs
    m = compute_all(y, p)
    assert np.isnan(m["per_class"]["3"]["roc_auc"])
    assert m["per_class"]["3"]["support"] == 0 and m["per_class"]["3"]["recall"] == 0
    pred = p.argmax(1)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    present = [0, 1, 2]
    assert m["roc_auc_macro"] == pytest.approx(np.mean([skm.roc_auc_score(y == k, p[:, k]) for k in present]))


def test_single_class():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    m = compute_all(np.zeros(3, dtype=int), p)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert not np.isnan(m["roc_auc_micro"])  # pooled one-hot still has both classes
    assert np.isnan(m["roc_auc_macro"])  # no class has both positives and negatives


def test_invalid_inputs_are_errors():
    y, p = _random(10, 3, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        compute_all(y, p * 2)
    bad = p.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_all(y, bad)
    with pytest.raises(ValueError, match="labels must be in"):
        compute_all(y + 3, p)
    with pytest.raises(ValueError, match="one entry per row"):
        compute_all(y[:5], p)


def test_evaluate_module_loads_offline_from_path():
    metric = load_skin_metrics()
    y, p = _random(100, 4, 9)
    metric.add_batch(predictions=p[:60], references=y[:60])
    metric.add_batch(predictions=p[60:], references=y[60:])
    res = metric.compute(class_names=["a", "b", "c", "d"])
    assert res["accuracy"] == pytest.approx(compute_all(y, p)["accuracy"])
    assert set(res["per_class"]) == {"a", "b", "c", "d"}
    assert SKIN_METRICS_PATH.endswith("skin_metrics.py")


def test_top_k_with_ties_and_absent_class_auc_follow_scikit_learn():
    """Tied scores are broken as scikit-learn breaks them; with a class absent from the labels, the
    macro AUC averages the classes present (scikit-learn raises, or gives NaN), each scikit-learn's AUC."""
    y = np.array([0, 1, 2, 3, 1, 2])
    p = np.full((6, 4), 0.25)  # every score tied
    p[4] = [0.1, 0.3, 0.3, 0.3]
    for k in (1, 2, 3):
        assert compute_all(y, p, top_k=(k,)).get(f"top_{k}_accuracy", 1.0) == pytest.approx(
            skm.top_k_accuracy_score(y, p, k=k, labels=range(4))
        )
    y2, p2 = _random(300, 5, 11)
    y2[y2 == 4] = 0
    with pytest.raises(ValueError):  # scikit-learn: an error, or NaN when given the labels
        skm.roc_auc_score(y2, p2, multi_class="ovr", average="macro")
    with pytest.warns(UserWarning):
        assert np.isnan(skm.roc_auc_score(y2, p2, multi_class="ovr", average="macro", labels=range(5)))
    m = compute_all(y2, p2)
    assert m["roc_auc_macro"] == pytest.approx(
        np.mean([skm.roc_auc_score(y2 == k, p2[:, k]) for k in range(4)])
    )
