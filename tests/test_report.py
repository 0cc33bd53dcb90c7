"""One evaluation spine (issue #34): a Predictions record, one report() for every evaluation, the
Predictor owning the views' disagreement."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from skinacc.calibration import probs_from_logits
from skinacc.clinical import DecisionRules, view_disagreement
from skinacc.config import ClinicalArguments
from skinacc.evaluation import Predictions, read_predictions_npz, report
from skinacc.metrics import compute_all

ROOT = Path(__file__).resolve().parents[1]


def _predictions(n: int = 120, classes: int = 3, seed: int = 0, **kw) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    probs = rng.dirichlet(np.ones(classes), n)
    probs[np.arange(n), labels] += 0.8
    probs /= probs.sum(1, keepdims=True)
    names = [f"class {c}" for c in range(classes)]
    return Predictions(names, labels, probs, np.arange(n) * 7, paths=[f"img_{i}.jpg" for i in range(n)], **kw)


def test_readme_report_example_runs_as_written(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"report \(a test runs this block as written\):\n\n```python\n(.*?)```", text, re.S)
    assert block, "the README's report example is gone"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"balanced accuracy 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", out), out
    clinical = json.loads((tmp_path / "outputs" / "my_eval" / "clinical.json").read_text())
    assert clinical["bootstrap"]["unit"] == "lesion" and clinical["bootstrap"]["units"] == 100


def test_report_writes_every_file_of_an_evaluation(tmp_path):
    pred = _predictions(groups=(np.arange(120) // 2).astype(str), group_by="lesion")
    result = report(pred, tmp_path, extra={"split": "test"}, clinical=ClinicalArguments(bootstrap=50))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["class_names"] == pred.class_names
    assert (
        metrics["balanced_accuracy"]
        == compute_all(pred.labels, pred.probs, pred.class_names)["balanced_accuracy"]
    )
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(rows) == 121 and rows[1].startswith("img_0.jpg,")
    assert (tmp_path / "per_class.csv").is_file()
    clinical = json.loads((tmp_path / "clinical.json").read_text())
    assert clinical["bootstrap"]["unit"] == "lesion" and "decision_rules" not in clinical
    drawn = {p.name for p in result.figures}
    assert {"confusion_matrix.png", "risk_coverage.png"} <= drawn and all(
        (tmp_path / n).is_file() for n in drawn
    )
    scalars = result.scalars()
    assert scalars["balanced_accuracy"] == metrics["balanced_accuracy"]
    assert scalars["clinical/balanced_accuracy"] == clinical["headline"]["balanced_accuracy"]["value"]
    # Rules frozen on validation are described in the report; no clinical options, no clinical report.
    with_rules = report(
        pred, tmp_path / "r", clinical=ClinicalArguments(bootstrap=0), rules=DecisionRules(), plots=False
    )
    assert with_rules.clinical["decision_rules"] == [] and not with_rules.figures
    assert report(pred, tmp_path / "plain", plots=False).clinical is None
    assert not (tmp_path / "plain" / "clinical.json").exists()


def test_report_names_a_subgroup_column_the_predictions_lack(tmp_path):
    pred = _predictions(metadata={"sex": ["f", "m"] * 60})
    with pytest.raises(ValueError, match=r"--subgroup_columns: no column 'age' .*columns: \['sex'\]"):
        report(
            pred, tmp_path, clinical=ClinicalArguments(bootstrap=0, subgroup_columns=["age:40"]), plots=False
        )
    result = report(
        pred, tmp_path, clinical=ClinicalArguments(bootstrap=0, subgroup_columns=["sex"]), plots=False
    )
    assert {r["subgroup"] for r in result.clinical["subgroups"]["sex"]} == {"f", "m"}


def test_predictions_file_round_trip_keeps_metadata_and_extra_arrays(tmp_path):
    pred = _predictions(n=6, metadata={"age": [30, None, 45.5, 60, "", 20]}, groups=np.array(list("aabbcc")))
    pred.save_npz(tmp_path / "p.npz", logits=np.ones((6, 2, 3), np.float32), fold=np.full(6, 1))
    back = read_predictions_npz(tmp_path / "p.npz")
    assert back["class_names"] == pred.class_names and back["path"].tolist() == pred.paths
    np.testing.assert_array_equal(back["probs"], pred.probs)
    assert back["group"].tolist() == list("aabbcc") and back["fold"].tolist() == [1] * 6
    assert back["metadata"]["age"].tolist() == ["30", "", "45.5", "60", "", "20"]  # missing stays missing
    assert back["logits"].shape == (6, 2, 3) and not list(tmp_path.glob(".*"))  # written atomically


def test_the_predictor_owns_the_views_disagreement():
    from skinacc.data.data_config import DataConfig
    from skinacc.predictor import Predictor

    torch.manual_seed(0)
    z = torch.randn(50, 4, 5)  # 50 images, 4 TTA views, 5 classes
    predictor = Predictor(torch.nn.Linear(1, 1), DataConfig(), temperature=1.7)
    views = np.stack([probs_from_logits(z[:, v], 1.7) for v in range(4)], 1)
    np.testing.assert_array_equal(predictor.disagreement(z), view_disagreement(views))
    assert 0 < predictor.disagreement(z).mean() < 1
    assert predictor.disagreement(z[:, :1]) is None  # one view: nothing to disagree with


def test_cv_joins_folds_in_sample_order_and_refuses_an_image_twice():
    from skinacc.run.cv import _join

    def part(ids, meta):
        n = len(ids)
        return {"sample_id": np.array(ids), "label": np.zeros(n, int), "probs": np.full((n, 2), 0.5),
                "path": np.array([f"p{i}" for i in ids]), "group": np.array([""] * n),
                "class_names": ["a", "b"], "metadata": {"sex": np.array(meta)}}  # fmt: skip

    oof = _join([part([4, 1], ["f", "m"]), part([0, 9], ["m", ""])], group_column=None)
    assert oof.sample_ids.tolist() == [0, 1, 4, 9] and oof.paths == ["p0", "p1", "p4", "p9"]
    assert list(oof.metadata["sex"]) == ["m", "m", "f", ""] and oof.groups is None
    with pytest.raises(ValueError, match="1 images were held out by more than one fold"):
        _join([part([4, 1], ["f", "m"]), part([1], ["m"])], group_column=None)
