"""Parquet shards and --streaming: preparation, the loader's fixed order, exact-once evaluation over two
ranks, and a kill -9 resume that ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from skinacc.checkpoint import MANIFEST, list_checkpoints
from skinacc.config import ConfigError, DataArguments, TrainArguments, validate
from skinacc.data import ImageTransform, load_skin_dataset
from skinacc.data.data_config import DataConfig
from skinacc.data.pool import ordered_map
from skinacc.data.shards import write_shards
from skinacc.data.streaming import StreamingLoader, load_streaming

from .conftest import cli, run_two_process, train

SYN = ["--synthetic_num_classes", "4", "--synthetic_images_per_class", "40", "--synthetic_image_size", "64"]
CFG = DataConfig(image_size=48, resize_size=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _synthetic(**kw):
    return load_skin_dataset(
        DataArguments(synthetic_num_classes=4, synthetic_images_per_class=40, synthetic_image_size=64, **kw)
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The tiny synthetic set as shards (train 8 shards, validation and test rounded likewise)."""
    # A name of its own: datasets caches a loaded folder under its name (a stale copy would be reused).
    out = tmp_path_factory.mktemp("shards") / f"syn-{time.time_ns()}"
    cli("prepare-shards", [*SYN, "--output_dir", str(out), "--images_per_shard", "10", "--shard_size", "56"])
    return out


def _ids(ds) -> list[int]:
    return [int(r["sample_id"]) for r in ds.select_columns(["sample_id"])]


def test_prepare_shards_keeps_the_split_labels_and_report(shards):
    import datasets

    meta = json.loads((shards / "skinacc_shards.json").read_text())
    ref = _synthetic()
    assert meta["class_names"] == ref.class_names
    assert meta["splits"]["train"]["num_shards"] % 8 == 0
    files = sorted(p.name for p in (shards / "data").iterdir())
    assert files[0].startswith("test-00000-of-") and all(f.endswith(".parquet") for f in files)
    # A Hugging Face dataset as it stands: splits, sizes, ClassLabel names, the very same split.
    dd = datasets.load_dataset(str(shards), cache_dir=str(shards.parent / "hf-cache"))
    for split in ("train", "validation", "test"):
        assert len(dd[split]) == meta["splits"][split]["num_examples"] == len(ref.dataset[split])
        assert sorted(dd[split]["sample_id"]) == sorted(ref.dataset[split]["sample_id"])
        counts = np.bincount(dd[split]["label"], minlength=4).tolist()
        assert counts == meta["splits"][split]["label_counts"]
    assert dd["train"].features["label"].names == ref.class_names
    assert dd["train"]["sample_id"] != sorted(dd["train"]["sample_id"]), "training rows are stored shuffled"
    img = dd["train"][0]["image"]
    assert min(img.size) == 56
    card = (shards / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "--streaming" in card
    assert json.loads((shards / "data_report.json").read_text())["num_images"] == 160


def test_prepare_shards_reports_bad_files_and_never_overwrites(tmp_path):
    from PIL import Image

    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (80, 60), (40 * i, 100 if c == "a" else 0, 50)).save(root / c / f"{i}.jpg")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    data = load_skin_dataset(DataArguments(data_dir=str(root), test_size=0.25, val_size=0.2))
    out = tmp_path / "shards"
    meta = write_shards(data, out, 40, images_per_shard=4, shard_multiple=2)
    report = json.loads((out / "data_report.json").read_text())
    assert any(b["path"].endswith("broken.jpg") for b in report["bad_files"])
    assert meta["bad_files"] >= 1 and not (tmp_path / "shards.partial").exists()
    with pytest.raises(FileExistsError, match="--output_dir"):
        write_shards(data, out, 40)


def _batches(loader, epoch=0):
    loader.set_epoch(epoch)
    return [{k: v.clone() for k, v in b.items()} for b in loader]


def test_streaming_loader_order_is_fixed_and_resume_skips_exactly(shards):
    data = load_streaming(DataArguments(dataset_name=str(shards), streaming=True))
    n = data.sizes["train"]

    def make(workers):
        return StreamingLoader(
            data.dataset["train"], ImageTransform(CFG, train=True, seed=3), 8, n, train=True, seed=3,
            shuffle_buffer=16, workers=workers,
        )  # fmt: skip

    inline, pooled = _batches(make(0)), _batches(make(2))
    assert len(inline) == len(make(0)) == n // 8
    for a, b in zip(inline, pooled, strict=True):  # decoding processes change nothing
        assert all(torch.equal(a[k], b[k]) for k in a)
    again = _batches(make(0))
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(inline, again))
    other = _batches(make(0), epoch=1)  # a new epoch: a new order and new augmentations
    assert [b["sample_id"].tolist() for b in other] != [b["sample_id"].tolist() for b in inline]
    tail = make(2).skip_first(5)
    assert len(tail) == len(inline) - 5
    for a, b in zip(inline[5:], _batches(tail), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    seen = torch.cat([b["sample_id"] for b in inline]).tolist()
    assert len(set(seen)) == len(seen), "no row twice in an epoch"

    test = StreamingLoader(
        data.dataset["test"], ImageTransform(CFG, train=False), 7, data.sizes["test"], train=False
    )
    ids = torch.cat([b["sample_id"] for b in test]).tolist()
    real = [i for i in ids if i >= 0]
    assert sorted(real) == sorted(_ids(data.dataset["test"])) and len(ids) % 7 == 0


def test_ordered_map_keeps_order_and_bounds_the_look_ahead():
    read = []

    def items():
        for i in range(50):
            read.append(i)
            yield i

    it = ordered_map(abs, items(), workers=2, prefetch=2)
    assert next(it) == 0
    assert len(read) <= 2 * 2 + 1, "reads only a few items ahead, not the whole input"
    assert [0, *it] == list(range(50))


def test_streaming_flag_problems_are_named():
    with pytest.raises(ConfigError) as e:
        validate(
            DataArguments(streaming=True, preresize=True, max_train_samples=10, shuffle_buffer=0),
            TrainArguments(sampler="balanced", output_dir="/tmp/x-never-written"),
        )
    msg = str(e.value)
    for part in ("--streaming needs --dataset_name", "--preresize", "--max_train_samples=10",
                 "--shuffle_buffer=0", "--sampler balanced"):  # fmt: skip
        assert part in msg


STREAM = [
    "--model", "test_efficientnet", "--no_pretrained", "--image_size", "48", "--report_to", "none",
    "--batch_size", "8", "--streaming",
]  # fmt: skip


@pytest.mark.slow
def test_two_ranks_stream_each_image_once_and_match_one_process_evaluation(shards, tmp_path):
    run = tmp_path / "ddp"
    proc = run_two_process(
        "train.py",
        [
            *STREAM,
            "--dataset_name",
            str(shards),
            "--epochs",
            "2",
            "--num_workers",
            "1",
            "--output_dir",
            str(run),
        ],
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_images"] == 48  # 160 images, 30% test: each once over two ranks
    preds = (run / "eval_test" / "predictions.csv").read_text().splitlines()[1:]
    assert len({p.split(",")[0] for p in preds}) == 48
    assert summary["launch"]["num_processes"] == 2
    assert proc.stdout.count("epoch 2/2") == 1, "rank 0 prints, once"
    # The same model evaluated by one map-style process on the same shards: the same figures.
    ev = tmp_path / "eval"
    cli(
        "evaluate",
        ["--model", str(run), "--dataset_name", str(shards), "--split", "test", "--output_dir", str(ev)],
    )
    a = json.loads((run / "eval_test" / "metrics.json").read_text())
    b = json.loads((ev / "metrics.json").read_text())
    assert a["num_samples"] == b["num_samples"] == 48
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro", "ece"):
        assert a[k] == pytest.approx(b[k], abs=1e-6), k
    # ... and streamed by two ranks through evaluate.py
    ev2 = tmp_path / "eval2"
    run_two_process(
        "evaluate.py",
        [
            "--model",
            str(run),
            "--dataset_name",
            str(shards),
            "--streaming",
            "--split",
            "test",
            "--output_dir",
            str(ev2),
        ],
    )
    c = json.loads((ev2 / "metrics.json").read_text())
    assert c["num_samples"] == 48 and c["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)


class Crash(Exception):
    """What a crash (or kill -9) leaves: the run ends wherever it is."""


def test_streaming_crash_and_resume_equals_uninterrupted(shards, tmp_path, monkeypatch):
    """A streamed run (decoding pool of 2, dermoscopy augmentation, cosine, EMA) that crashes right after
    its mid-epoch step-15 checkpoint and is resumed ends as the unbroken run does, bit for bit."""
    from skinacc.run import TrainingRun

    args = [
        *STREAM, "--dataset_name", str(shards), "--epochs", "3", "--num_workers", "2",
        "--checkpoint_every_n_steps", "5", "--keep_last_checkpoints", "100", "--early_stopping_patience", "0",
        "--eval_test", "false", "--augment", "dermoscopy", "--scheduler", "cosine", "--optimizer", "adamw",
        "--ema_decay", "0.9", "--shuffle_buffer", "32",
    ]  # fmt: skip
    ref = tmp_path / "ref"
    train([*args, "--output_dir", str(ref)])
    on_step = TrainingRun._on_step

    def crash_after_step_15(run, st, loss):
        on_step(run, st, loss)
        if st.global_step == 15:
            raise Crash

    monkeypatch.setattr(TrainingRun, "_on_step", crash_after_step_15)
    out = tmp_path / "crash"
    with pytest.raises(Crash):
        train([*args, "--output_dir", str(out)])
    monkeypatch.undo()
    mid = list_checkpoints(out / "checkpoints")[-1]
    assert mid.name == "step_00000015" and json.loads((mid / MANIFEST).read_text())["batch_in_epoch"] > 0
    train([*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    h = lambda r: [  # noqa: E731
        {k: e[k] for k in ("epoch", "train_loss", "val_loss", "lr", "global_step")}
        for e in json.loads((r / "history.json").read_text())
    ]
    assert h(out) == h(ref)
    for pick in (lambda r: list_checkpoints(r / "checkpoints")[-1] / "model.safetensors",
                 lambda r: r / "best" / "model.safetensors"):  # fmt: skip
        a, b = load_file(str(pick(ref))), load_file(str(pick(out)))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shards_rewritten_in_place_are_read_anew(tmp_path):
    """A shard folder prepared again under the same name is loaded fresh, not from datasets' cache."""
    folder = tmp_path / "same-name"
    cache = tmp_path / "cache"
    sizes = []
    for shard_size in (56, 40):
        if folder.exists():
            shutil.rmtree(folder)
        write_shards(_synthetic(), folder, shard_size, images_per_shard=50)
        data = load_skin_dataset(DataArguments(dataset_name=str(folder), cache_dir=str(cache)))
        sizes.append(min(data.dataset["train"][0]["image"].size))
    assert sizes == [56, 40]
