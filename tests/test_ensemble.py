"""What a cross-validation leaves: its fold models as one ensemble (evaluate, predict, the demo,
Grad-CAM), weight soups as plain timm models, and the out-of-fold temperature of a final fit."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from skinacc.artifact import load_model
from skinacc.config import CONFIG_TYPES, ConfigError, parse_config
from skinacc.ensemble import EnsembleModel, greedy_soup, save_ensemble, soup_state_dict
from skinacc.predictor import Predictor

from .conftest import REPO, TINY, command, train

CV = [
    *TINY,
    "--epochs",
    "1",
    "--bootstrap",
    "50",
    "--synthetic_num_classes",
    "3",
    "--tta",
    "flip",
    "--calibrate",
]


#: (folder, repo) of every upload the cross-validation below asked for.
PUSHED = []


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "cv"
    with pytest.MonkeyPatch.context() as mp:  # the upload itself is huggingface_hub's; recorded here
        mp.setattr(
            "skinacc.hub.push_folder_to_hub", lambda folder, repo, *a, **k: PUSHED.append((folder, repo))
        )
        report = train([*CV, "--cv_folds", "2", "--test_size", "0.2", "--output_dir", str(out),
                        "--push_to_hub", "--hub_model_id", "my-org/skinacc-cv"])  # fmt: skip
    return out, report


def _pixels(n=6, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_the_ensemble_averages_each_members_tempered_tta_probabilities(cv_run):
    out, report = cv_run
    assert report["oof_temperature"] > 0 and report["tta"] == "flip"
    spec = json.loads((out / "ensemble" / "ensemble.json").read_text())
    assert [m["path"] for m in spec["members"]] == ["members/fold_0", "members/fold_1"]
    temps = [json.loads((out / f"fold_{k}" / "best" / "config.json").read_text())["skinacc"]["temperature"]
             for k in range(2)]  # fmt: skip
    assert [m["temperature"] for m in spec["members"]] == temps and temps[0] != temps[1]
    ens = load_model(str(out))  # a cross-validation folder loads as its ensemble
    assert isinstance(ens.model, EnsembleModel) and ens.tta == "flip" and ens.temperature == 1.0
    x = _pixels()
    got = Predictor.from_loaded(ens)(x)
    members = [load_model(str(out / f"fold_{k}")) for k in range(2)]
    want = np.mean([Predictor.from_loaded(m)(x) for m in members], 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    card = (out / "ensemble" / "README.md").read_text()
    assert (
        "Ensemble of the 2 fold models" in card
        and "nothing in this folder estimates its own accuracy" in card
    )


def test_the_ensemble_runs_in_evaluate_predict_and_the_demo(cv_run, tmp_path):
    from skinacc.demo import ImageClassifier

    out, _ = cv_run
    metrics = command(
        "evaluate", ["--model", str(out), "--output_dir", str(tmp_path / "ev"), "--bootstrap", "50"]
    )
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    data = json.loads((out / "fold_0" / "data_report.json").read_text())
    sizes = data["split_sizes"]
    assert ev["num_samples"] == sizes["test"] and 0.0 <= metrics["balanced_accuracy"] <= 1.0
    with (tmp_path / "ev" / "predictions.csv").open() as f:
        images = [f"{data['root']}/{r['path']}" for r in csv.DictReader(f)][:3]
    command(
        "predict",
        ["--model", str(out / "ensemble"), "--inputs", *images, "--output", str(tmp_path / "p.csv")],
    )
    with (tmp_path / "p.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    clf = ImageClassifier(load_model(str(out / "ensemble")))
    try:
        pred = clf(images[0])
    finally:
        clf.close()
    assert pred.error is None and pred.overlay is not None and abs(sum(p for _, p in pred.top_k) - 1) < 1e-5
    assert clf.explainer.layer.count(",") == 1, "Grad-CAM over both members' last maps"


def test_soups_are_plain_timm_models_with_the_oof_temperature(cv_run):
    import timm

    out, report = cv_run
    result = command("ensemble", ["--cv_dir", str(out), "--soup", "both"])
    members = [load_model(str(out / f"fold_{k}")).model.state_dict() for k in range(2)]
    uniform = timm.create_model(f"local-dir:{out / 'soup_uniform'}", pretrained=True).state_dict()
    for k, v in uniform.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (members[0][k] + members[1][k]) / 2, rtol=1e-5, atol=1e-6)
    greedy = result["soups"]["greedy"]
    assert (
        greedy["ingredients"][0]
        == f"fold_{int(np.argmax([r['balanced_accuracy'] for r in report['per_fold']]))}"
    )
    assert len(greedy["greedy_log"]) == 2
    loaded = load_model(str(out / "soup_greedy"))
    assert loaded.temperature == pytest.approx(report["oof_temperature"]) and loaded.tta == "flip"


def test_greedy_soup_keeps_an_ingredient_only_when_the_score_does_not_drop():
    sds = [{"w": torch.tensor([float(i)]), "n": torch.tensor(i)} for i in range(3)]
    avg = soup_state_dict(sds)
    assert avg["w"].item() == 1.0 and avg["n"].item() == 0
    # score: closeness of w to 0.5; ranking puts ingredient 1 first, then 0 (soup 0.5: kept), then 2.
    kept, log = greedy_soup(sds, [0.5, 0.9, 0.1], lambda sd: -abs(sd["w"].item() - 0.5))
    assert kept == [1, 0] and [e["kept"] for e in log] == [True, True, False]
    with pytest.raises(ValueError, match="architecture"):
        soup_state_dict([sds[0], {"w": torch.zeros(2), "n": torch.tensor(0)}])


def test_members_that_disagree_are_refused(cv_run, tmp_path):
    out, _ = cv_run
    other = tmp_path / "other"
    train([*TINY, "--epochs", "1", "--synthetic_num_classes", "4", "--output_dir", str(other)])
    with pytest.raises(ValueError, match="members must share classes"):
        save_ensemble([out / "fold_0" / "best", other / "best"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_final_fit_takes_the_out_of_fold_temperature(cv_run, tmp_path):
    out, report = cv_run
    final = tmp_path / "final"
    args = [*TINY, "--synthetic_num_classes", "3", "--epochs", "1", "--final_fit", "--scheduler", "cosine",
            "--test_size", "0.2", "--tta", "flip", "--output_dir", str(final)]  # fmt: skip
    summary = train([*args, "--calibrate_from", str(out)])
    cfg = json.loads((final / "best" / "config.json").read_text())["skinacc"]
    assert cfg["temperature"] == pytest.approx(report["oof_temperature"])
    assert summary["calibration_oof_temperature"] == pytest.approx(report["oof_temperature"])
    test = json.loads((final / "eval_test" / "metrics.json").read_text())
    assert test["temperature"] == pytest.approx(report["oof_temperature"]), "tested at its stored temperature"
    from skinacc.model_card import run_model_card

    assert "temperature (fitted on cross-validation's out-of-fold predictions)" in run_model_card(final)
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG_TYPES, [*args, "--calibrate_from", str(tmp_path), "--tta", "none"])
    assert "no cv_report.json" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG_TYPES, [*args, "--calibrate_from", str(out), "--tta", "none"])
    assert "fitted at --tta flip, this run uses --tta none" in str(e.value)


def test_the_ensemble_exports_to_onnx_as_one_graph(cv_run, tmp_path):
    out, _ = cv_run
    command("export-onnx", ["--model", str(out / "ensemble"), "--output", str(tmp_path / "ens.onnx")])
    import onnxruntime as ort

    ens = load_model(str(out / "ensemble"))
    x = _pixels(2)
    feed = Predictor(ens.model, ens.data_cfg).normalize(x).numpy()
    sess = ort.InferenceSession(str(tmp_path / "ens.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: feed})[0]
    with torch.no_grad():
        want = ens.model(torch.from_numpy(feed)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)  # log-probabilities of the averaged members


def _hub_cache(cache, repo, folder):
    """A Hugging Face cache holding ``folder`` as the snapshot of ``repo``: what a download leaves."""
    root, rev = cache / f"models--{repo.replace('/', '--')}", "0" * 40
    shutil.copytree(folder, root / "snapshots" / rev)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)


def test_an_ensemble_goes_to_the_hub_whole_and_loads_back_as_one_model(cv_run, tmp_path):
    out, _ = cv_run
    # --push_to_hub with --cv_folds: the ensemble, once, at the end; no fold model
    assert [(out / "hub", "my-org/skinacc-cv")] == PUSHED and (out / "hub" / "ensemble.json").is_file()
    assert not any((out / f"fold_{k}" / "hub").exists() for k in range(2))
    hub = command(
        "push-to-hub",
        ["--model", str(out), "--hub_model_id", "my-org/skinacc-cv", "--dry_run", "--output_dir",
         str(tmp_path / "hub"), "--license", "cc-by-nc-4.0"],
    )  # fmt: skip
    spec = json.loads((hub / "ensemble.json").read_text())
    assert [m["path"] for m in spec["members"]] == ["members/fold_0", "members/fold_1"]
    assert all("source" not in m for m in spec["members"]) and not (hub / "run_config.yaml").exists()
    assert sorted(p.name for p in (hub / "members" / "fold_1").iterdir()) == [
        "class_map.txt",
        "config.json",
        "model.safetensors",
    ]
    card = (hub / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-4.0\nlibrary_name: skinacc\n")
    assert "hf-hub:my-org/skinacc-cv" in card and "Ensemble of the 2 fold models" in card
    # Back from the Hub through huggingface_hub's own calls, answered offline by its cache; beside it a
    # plain timm repository, which must still load through timm.
    cache = tmp_path / "hf"
    _hub_cache(cache, "my-org/skinacc-cv", hub)
    _hub_cache(cache, "my-org/fold-1", out / "fold_1" / "best")
    torch.save(_pixels(), tmp_path / "x.pt")
    script = (
        "import sys, numpy as np, torch; from skinacc.artifact import load_model; "
        "from skinacc.predictor import Predictor; x = torch.load(sys.argv[1]); "
        "e, m = load_model('hf-hub:my-org/skinacc-cv'), load_model('my-org/fold-1'); "
        "print(type(e.model).__name__, type(m.model).__name__, e.tta, m.temperature); "
        "np.save(sys.argv[2], np.stack([Predictor.from_loaded(e)(x), Predictor.from_loaded(m)(x)]))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.pt"), str(tmp_path / "p.npy")],
                         env=env, cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    fold_1 = load_model(str(out / "fold_1"))
    assert res.stdout.split() == ["EnsembleModel", "EfficientNet", "flip", str(fold_1.temperature)]
    got = np.load(tmp_path / "p.npy")
    x = _pixels()
    np.testing.assert_allclose(got[0], Predictor.from_loaded(load_model(str(out)))(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], Predictor.from_loaded(fold_1)(x), rtol=1e-5, atol=1e-6)
