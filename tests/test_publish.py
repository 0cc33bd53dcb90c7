"""W&B offline runs read back, Hub folders loaded both ways, inference, ONNX, run comparison."""

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import skinacc
from skinacc.artifact import load_model
from skinacc.hub import export_for_hub
from skinacc.tracking import prepare_wandb
from skinacc.wandb_offline import read_offline_run

from .conftest import TINY, cli, train


def _py(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``recipes/<script>`` as the command it is, in this process."""
    name = {"push_to_hub.py": "push-to-hub", "predict.py": "predict", "export_onnx.py": "export-onnx",
            "compare_runs.py": "compare-runs"}[script]  # fmt: skip
    return cli(name, list(args), check=check)


def test_offline_wandb_run_records_what_matters(trained_run):
    run = read_offline_run(trained_run / "wandb")
    cfg = run["config"]
    assert cfg["model"]["model"] == "test_efficientnet" and cfg["train"]["seed"] == 42
    assert cfg["launch"]["num_processes"] == 1 and cfg["launch"]["mixed_precision"] == "no"
    assert cfg["launch"]["skinacc"] == skinacc.__version__  # which code made the run
    assert len(cfg["resolved"]["class_names"]) == 3 and cfg["resolved"]["global_batch_size"] == 16
    assert "synthetic" in cfg["data"]["cache_dir"] or cfg["data"]["data_dir"] is None
    assert run["name"] == "test_efficientnet-1xcpu-fp32" and run["group"].startswith("test_efficientnet")
    assert {"test_efficientnet", "fp32", "1proc", "cpu"} <= set(run["tags"])
    keys = set().union(*run["history"])
    for k in (
        "train/step_loss",
        "train/lr",
        "epoch/val_loss",
        "epoch/val_accuracy",
        "epoch/images_per_sec",
        "epoch/peak_mem_mb",
        "epoch/val_balanced_accuracy",
        "test/accuracy",
    ):
        assert k in keys, k
    images = {k: v for row in run["history"] for k, v in row.items() if k.startswith("plots/")}
    assert len(images) >= 6 and all(
        v["_type"] == "image-file" and v["path"].endswith(".png") for v in images.values()
    )
    tables = {
        k: v
        for row in run["history"]
        for k, v in row.items()
        if k in ("test/per_class", "test/confusion_matrix")
    }
    assert {v["_type"] for v in tables.values()} == {"table-file"} and len(tables) == 2
    media = list((trained_run / "wandb").rglob("media/images/**/*.png"))
    assert len(media) >= 6
    table = next((trained_run / "wandb").rglob("media/table/test/per_class*.table.json"))
    assert len(json.loads(table.read_text())["data"]) == 3
    model_art = [a for a in run["artifacts"] if a["type"] == "model"]
    assert (
        model_art
        and {"config.json", "model.safetensors", "class_map.txt"} <= set(model_art[0]["files"])
        and "best" in model_art[0]["aliases"]
    )
    assert model_art[0]["name"].endswith(f"-{run['id']}"), "one model artifact per run, named by run id"
    assert "test/macro_f1" in run["summary"]


def test_no_key_no_mode_goes_offline_loudly(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with caplog.at_level("WARNING"):
        assert prepare_wandb("wandb") == "offline"
    assert "OFFLINE" in caplog.text
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert prepare_wandb("wandb") == "disabled"
    assert prepare_wandb("none") is None


def test_wandb_disabled_mode_trains(tmp_path, monkeypatch):
    out = tmp_path / "off"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    train([*TINY, "--epochs", "1", "--output_dir", str(out), "--report_to", "wandb", "--eval_test", "false"])
    assert (out / "history.json").is_file() and not list(out.rglob("*.wandb"))


def test_hub_folder_loads_with_timm_and_transformers(trained_run, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    folder = export_for_hub(trained_run, tmp_path / "hub", "my-org/skinacc-test", "cc-by-nc-sa-4.0")
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "README.md",
        "class_map.txt",
    }
    cfg = json.loads((folder / "config.json").read_text())
    assert "model_args" not in cfg, "timm's model_args.num_classes breaks transformers' TimmWrapper"
    assert cfg["pretrained_cfg"]["input_size"] == [3, 48, 48] and len(cfg["pretrained_cfg"]["mean"]) == 3
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: timm" in card and "model-index" in card
    assert (
        "Not a medical device" in card
        and "balanced_accuracy" in card
        and "hf-hub:my-org/skinacc-test" in card
    )

    trained, names, data_cfg = load_model(str(trained_run))[:3]
    via_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    via_hf = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    assert via_timm.pretrained_cfg["label_names"] == names == [via_hf.config.id2label[i] for i in range(3)]
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        ref = trained(x)
        assert torch.allclose(via_timm(x), ref, atol=1e-6)
        assert torch.allclose(via_hf(x).logits, ref, atol=1e-6)
    rows = list(csv.DictReader((trained_run / "eval_test" / "predictions.csv").open()))[:6]
    root = json.loads((trained_run / "data_report.json").read_text())["root"]
    clf = pipeline("image-classification", model=str(folder))
    for r in rows:
        out = clf(Image.open(os.path.join(root, r["path"])), top_k=1)
        assert out[0]["label"] == r["predicted"], "transformers' pipeline predicts like skinacc's evaluation"


def test_push_to_hub_dry_run_and_offline_error(trained_run, tmp_path):
    _py("push_to_hub.py", "--model", str(trained_run), "--dry_run", "--output_dir", str(tmp_path / "h"))
    assert (tmp_path / "h" / "model.safetensors").is_file()
    proc = _py(
        "push_to_hub.py",
        "--model",
        str(trained_run),
        "--hub_model_id",
        "my-org/x",
        "--output_dir",
        str(tmp_path / "h2"),
        check=False,
    )
    assert proc.returncode != 0 and "upload of" in proc.stderr and "my-org/x" in proc.stderr
    proc = _py("push_to_hub.py", "--model", str(trained_run), check=False)
    assert proc.returncode == 2 and "--hub_model_id is required" in proc.stderr


def test_predict_recipe_matches_evaluation(trained_run, tmp_path):
    rows = {r["path"]: r for r in csv.DictReader((trained_run / "eval_test" / "predictions.csv").open())}
    root = json.loads((trained_run / "data_report.json").read_text())["root"]
    some = sorted(rows)[:5]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, rel in enumerate(some):
        (folder / f"{i}.jpg").write_bytes(Path(root, rel).read_bytes())
    (folder / "broken.jpg").write_text("no image")
    _py(
        "predict.py",
        "--model",
        str(trained_run),
        "--inputs",
        str(folder),
        "--top_k",
        "2",
        "--output",
        str(tmp_path / "p.json"),
    )
    res = json.loads((tmp_path / "p.json").read_text())
    assert len(res) == 6 and any("error" in r for r in res)
    for i, rel in enumerate(some):
        r = next(x for x in res if x["path"].endswith(f"{i}.jpg"))
        assert r["top_k"][0]["label"] == rows[rel]["predicted"] and len(r["top_k"]) == 2
    _py(
        "predict.py",
        "--model",
        str(trained_run),
        "--inputs",
        str(folder / "[0-2].jpg"),
        "--output",
        str(tmp_path / "p.csv"),
        "--explain",
    )
    listed = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(listed) == 3
    for r in listed:  # one Grad-CAM overlay per image, beside the predictions, of the model's input size
        png = Path(r["explanation"])
        assert png.parent == tmp_path / "explanations" and Image.open(png).size == (48, 48)
    bad = _py(
        "predict.py", "--model", str(trained_run), "--inputs", str(tmp_path / "nothing-here"), check=False
    )
    assert bad.returncode == 2 and "nothing-here" in bad.stderr


def test_export_onnx_matches_pytorch(trained_run, tmp_path):
    pytest.importorskip("onnxruntime")
    proc = _py("export_onnx.py", "--model", str(trained_run), "--output", str(tmp_path / "m.onnx"))
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["max_abs_diff"] < 1e-4 and rep["same_top1"] == 1.0
    assert "max |diff|" in proc.stdout
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"pixel_values": np.zeros((7, 3, 48, 48), np.float32)})[0].shape == (7, 3), (
        "dynamic batch"
    )
    meta = sess.get_modelmeta().custom_metadata_map
    best = json.loads((trained_run / "best" / "config.json").read_text())
    assert json.loads(meta["label_names"]) == best["label_names"]
    assert json.loads(meta["mean"]) == best["pretrained_cfg"]["mean"] and json.loads(meta["input_size"]) == [
        3,
        48,
        48,
    ]


def test_compare_runs_local_and_offline_wandb(trained_run, tmp_path):
    wandb_dir = next((trained_run / "wandb").glob("offline-run-*"))
    _py("compare_runs.py", "--runs", str(trained_run), str(wandb_dir), "--output_dir", str(tmp_path / "cmp"))
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert len(rows) == 2 and all(float(r["images_per_sec"]) > 0 for r in rows)
    assert rows[0]["test_accuracy"] == rows[1]["test_accuracy"], (
        "the same run read from its files and from W&B"
    )
    assert (tmp_path / "cmp" / "comparison.md").read_text().startswith("| run |")
    assert Image.open(tmp_path / "cmp" / "throughput.png").size[0] > 400


def test_model_card_is_a_hub_card_with_licence_from_options(trained_run, tmp_path):
    from huggingface_hub import ModelCard

    card = ModelCard.load(
        export_for_hub(trained_run, tmp_path / "a", "org/m", "cc-by-nc-sa-4.0") / "README.md"
    )
    assert card.data.license == "cc-by-nc-sa-4.0" and card.data.library_name == "timm"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    m = json.loads((trained_run / "eval_test" / "metrics.json").read_text())
    assert results["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
    summary = json.loads((trained_run / "summary.json").read_text())
    assert f"| epoch of the model | {summary['model_epoch']} |" in card.text, "1-based, as everywhere else"
    assert summary["model_epoch"] == summary["best_epoch"], "--select_epoch best: one epoch, one line"
    assert "best validation" not in card.text
    sizes = json.loads((trained_run / "data_report.json").read_text())["split_sizes"]
    assert f"{sizes['train']} / {sizes['validation']} / {sizes['test']}" in card.text
    unset = ModelCard.load(export_for_hub(trained_run, tmp_path / "b") / "README.md")
    assert unset.data.license == "other" and "the terms of the training data apply" in unset.text


def test_every_option_labelled_for_the_card_is_a_row_of_it(trained_run, tmp_path):
    """Options carry their card label as field metadata; each must show up, with the run's value."""
    from skinacc.config import card_facts, read_run_config

    facts = card_facts(read_run_config(trained_run))
    assert {"architecture", "augmentation", "batch per process", "test-time augmentation"} <= facts.keys()
    text = (export_for_hub(trained_run, tmp_path / "c") / "README.md").read_text()
    for label, value in facts.items():
        if value is not None:
            shown = f"{value:.4f}" if isinstance(value, float) else value  # the card's number format
            assert f"| {label} | {shown} |" in text, label


def test_class_map_gives_timm_datasets_the_models_numbers(trained_run, tmp_path):
    """timm numbers the class folders it finds; with the shipped class map a folder lacking a class
    (and one named to sort differently) still gets the model's numbers."""
    import shutil

    from timm.data import ImageDataset

    names = (trained_run / "best" / "class_map.txt").read_text().splitlines()
    assert names == json.loads((trained_run / "best" / "config.json").read_text())["label_names"]
    root = Path(json.loads((trained_run / "data_report.json").read_text())["root"])
    partial = tmp_path / "partial"
    for c in names[1:]:
        shutil.copytree(root / c, partial / c)
    plain = ImageDataset(str(partial))
    mapped = ImageDataset(str(partial), class_map=str(trained_run / "best" / "class_map.txt"))
    assert plain.reader.class_to_idx[names[1]] == 0, "without the map: renumbered from 0"
    assert {c: mapped.reader.class_to_idx[c] for c in names[1:]} == {c: names.index(c) for c in names[1:]}


def test_runs_are_told_apart_in_comparisons(trained_run, tmp_path):
    import shutil

    import yaml

    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for d in (a, b):
        shutil.copytree(trained_run, d, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
    cfg = json.loads((b / "run_config.json").read_text())
    cfg["train"]["lr"] = 0.5
    (b / "run_config.json").write_text(json.dumps(cfg))
    (b / "run_config.yaml").write_text(yaml.safe_dump(cfg))
    c = tmp_path / "c"
    shutil.copytree(a, c)
    _py("compare_runs.py", "--runs", str(a), str(b), str(c), "--output_dir", str(tmp_path / "cmp"))
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["run"] for r in rows].count(str(a)) == 1 and len({r["run"] for r in rows}) == 3, "unique labels"
    assert {r["differs"] for r in rows} == {'lr="0.01"', 'lr="0.5"'} or {r["differs"] for r in rows} == {
        "lr=0.01",
        "lr=0.5",
    }
    assert all(r["speedup"] in ("", "nan") for r in rows), "one process count: no scaling point"


def test_predict_writes_as_it_goes_and_resumes_where_the_file_ends(trained_run, tmp_path):
    """Large inputs: .csv/.jsonl are written batch by batch; a file cut by a crash (half a line) is
    continued by --resume to the same results as one uninterrupted run; decoding processes change nothing."""
    root = json.loads((trained_run / "data_report.json").read_text())["root"]
    folder = tmp_path / "many"
    folder.mkdir()
    for i, src in enumerate(sorted(Path(root).rglob("*.jpg"))[:40]):
        (folder / f"{i:03d}.jpg").write_bytes(src.read_bytes())
    (folder / "broken.jpg").write_text("no image")
    base = ["--model", str(trained_run), "--inputs", str(folder), "--batch_size", "8"]
    full = tmp_path / "full.jsonl"
    _py("predict.py", *base, "--output", str(full), "--num_workers", "0")
    inproc = full.read_text().splitlines()
    assert len(inproc) == 41 and sum('"error"' in line for line in inproc) == 1
    pooled = tmp_path / "pooled.jsonl"
    _py("predict.py", *base, "--output", str(pooled), "--num_workers", "2")
    assert pooled.read_text().splitlines() == inproc
    for suffix in (".jsonl", ".csv"):
        ref = tmp_path / f"ref{suffix}"
        _py("predict.py", *base, "--output", str(ref))
        cut = tmp_path / f"cut{suffix}"
        data = ref.read_bytes()
        cut.write_bytes(data[: data.index(b"\n", len(data) // 3) + 25])  # a third of it and half a line
        proc = _py("predict.py", *base, "--output", str(cut), "--resume")
        assert "already in" in proc.stdout
        a, b = _rows(ref), _rows(cut)
        assert sorted(a) == sorted(b), suffix  # every image once, no half line left
        for path, (labels, probs) in a.items():  # batches differ after a resume: float noise only
            assert b[path][0] == labels and b[path][1] == pytest.approx(probs, abs=2e-6)
    bad = _py("predict.py", *base, "--output", str(tmp_path / "x.json"), "--resume", check=False)
    assert bad.returncode == 2 and "--resume" in bad.stderr


def _rows(path: Path) -> dict[str, tuple[list[str], list[float]]]:
    """path -> (labels, probabilities) of a .jsonl or .csv prediction file (asserting no path twice)."""
    out: dict[str, tuple[list[str], list[float]]] = {}
    if path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            r = json.loads(line)
            assert r["path"] not in out
            tops = r.get("top_k", [])
            out[r["path"]] = ([t["label"] for t in tops], [t["prob"] for t in tops])
    else:
        for r in csv.DictReader(path.open()):
            assert r["path"] not in out
            n = sum(k.startswith("label_") for k in r)
            labels = [r[f"label_{i + 1}"] for i in range(n) if r[f"label_{i + 1}"]]
            out[r["path"]] = (labels, [float(r[f"prob_{i + 1}"]) for i in range(len(labels))])
    return out
