import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skinacc.config import DataArguments
from skinacc.data import (
    BatchNormalizer,
    SyntheticSpec,
    build_dataloader,
    check_image,
    generate_synthetic_dataset,
    load_rgb,
    load_skin_dataset,
    resolve_data_config,
    set_transforms,
    split_indices,
    synthetic_class_names,
)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- synthetic default


def test_synthetic_is_deterministic_and_loads(tmp_path):
    spec = SyntheticSpec(num_classes=5, images_per_class=6, image_size=64, difficulty=0.7, seed=3)
    a = generate_synthetic_dataset(spec, tmp_path / "a")
    b = generate_synthetic_dataset(spec, tmp_path / "b")
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(
        generate_synthetic_dataset(SyntheticSpec(5, 6, 64, 0.7, seed=4), tmp_path / "c")
    )
    assert sorted(p.name for p in a.iterdir() if p.is_dir()) == sorted(synthetic_class_names(5))
    assert "SYNTHETIC" in (a / "README.md").read_text()
    data = load_skin_dataset(
        DataArguments(
            synthetic_num_classes=5,
            synthetic_images_per_class=6,
            synthetic_image_size=64,
            synthetic_difficulty=0.7,
            synthetic_seed=3,
            cache_dir=str(tmp_path / "a"),
        )
    )
    assert data.class_names == sorted(synthetic_class_names(5))
    assert data.report.num_images == 30 and "synthetic" in data.report.source
    assert Image.open(next(a.rglob("*.jpg"))).size == (64, 64)


def test_synthetic_classes_differ_but_are_not_trivial(tmp_path):
    """Mean lesion colour separates classes somewhat, yet varies within a class."""
    root = generate_synthetic_dataset(
        SyntheticSpec(num_classes=4, images_per_class=12, image_size=64, difficulty=0.5), tmp_path
    )
    means = {}
    for cdir in sorted(p for p in root.iterdir() if p.is_dir()):
        arr = np.stack(
            [np.asarray(Image.open(f), dtype=np.float32).mean((0, 1)) for f in sorted(cdir.glob("*.jpg"))]
        )
        means[cdir.name] = arr
    centres = np.stack([m.mean(0) for m in means.values()])
    within = np.mean([m.std(0).mean() for m in means.values()])
    between = np.std(centres, axis=0).mean()
    assert within > 2.0, "classes should vary internally"
    assert between > 2.0, "classes should differ"


# ---------------------------------------------------------------- splits


def test_split_proportions_stratified_and_reproducible():
    labels = np.repeat(np.arange(5), [100, 200, 50, 30, 120])
    a = split_indices(labels, 0.3, 0.1, seed=7)
    b = split_indices(labels, 0.3, 0.1, seed=7)
    c = split_indices(labels, 0.3, 0.1, seed=8)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["test"], c["test"])
    allidx = np.concatenate([a["train"], a["validation"], a["test"]])
    assert sorted(allidx.tolist()) == list(range(len(labels)))
    assert abs(len(a["test"]) / len(labels) - 0.3) < 0.01
    assert abs(len(a["validation"]) / (len(a["train"]) + len(a["validation"])) - 0.1) < 0.01
    for c_ in range(5):
        share = (labels[a["test"]] == c_).mean()
        assert abs(share - (labels == c_).mean()) < 0.01


def test_group_split_leaks_no_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), rng.integers(1, 5, 300))
    labels = (groups % 4).astype(int)  # one class per group, as with lesions
    s = split_indices(labels, 0.3, 0.1, seed=1, groups=groups.astype(str))
    sets = {k: set(groups[v]) for k, v in s.items()}
    assert (
        not sets["train"] & sets["test"]
        and not sets["train"] & sets["validation"]
        and not sets["test"] & sets["validation"]
    )
    assert abs(len(s["test"]) / len(labels) - 0.3) < 0.05
    for c in range(4):
        assert abs((labels[s["test"]] == c).mean() - 0.25) < 0.05


# ---------------------------------------------------------------- real data


@pytest.mark.data
def test_isic8_loads_with_groups_and_batches(isic8, tmp_path):
    data = load_skin_dataset(
        DataArguments(
            data_dir=str(isic8), group_column="lesion_group", cache_dir=str(tmp_path), num_workers=2
        )
    )
    assert data.num_classes == 8 and "melanoma" in data.class_names
    assert data.report.num_images == 1646 and not data.report.bad_files
    ds = data.dataset
    assert set(ds) == {"train", "validation", "test"}
    g = {k: set(ds[k]["group"]) for k in ds}
    assert not (g["train"] & g["test"] or g["train"] & g["validation"] or g["test"] & g["validation"])
    assert abs(len(ds["test"]) / 1646 - 0.3) < 0.03
    cfg = resolve_data_config(None, image_size=160)
    tds = set_transforms(ds, cfg, seed=0)
    loader = build_dataloader(tds["validation"], 8, train=False, num_workers=0)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 3, 160, 160) and batch["pixel_values"].dtype == torch.uint8
    assert batch["labels"].dtype == torch.long
    x = BatchNormalizer(cfg)(batch["pixel_values"])
    assert x.dtype == torch.float32
    # Manual normalisation of the first image equals the batched one.
    ref = (batch["pixel_values"][0].float() / 255 - torch.tensor(cfg.mean).view(3, 1, 1)) / torch.tensor(
        cfg.std
    ).view(3, 1, 1)
    assert torch.allclose(x[0], ref, atol=1e-5)
    assert -3 < float(x.mean()) < 3


# ---------------------------------------------------------------- bad input


def _jpeg(arr, mode=None, **kw) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, "JPEG", **kw) if mode else Image.fromarray(arr).save(b, "JPEG", **kw)
    return b.getvalue()


def _salted_folder(root: Path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    rgb = lambda: rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)  # noqa: E731
    good, bad = [], []
    a, b, empty = root / "Ba  Cellulitis", root / "Heathy", root / "Empty class"
    for d in (a, b, empty):
        d.mkdir(parents=True)
    for i in range(4):
        (a / f"ok{i}.jpg").write_bytes(_jpeg(rgb()))
        (b / f"ok{i}.jpg").write_bytes(_jpeg(rgb()))
        good += [str(a / f"ok{i}.jpg"), str(b / f"ok{i}.jpg")]
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8), "L").save(a / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA").save(a / "rgba.png")
    pal = Image.fromarray(rgb()).convert("P")
    pal.info["transparency"] = 0
    pal.save(b / "palette.png", transparency=0)
    Image.fromarray(rgb()).convert("CMYK").save(b / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (40, 50))).astype(np.uint16)).save(b / "sixteen.png")
    good += [
        str(a / "gray.jpg"),
        str(a / "rgba.png"),
        str(b / "palette.png"),
        str(b / "cmyk.jpg"),
        str(b / "sixteen.png"),
    ]
    (a / "zero.jpg").write_bytes(b"")
    full = _jpeg(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), quality=95)
    (a / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (b / "text.jpg").write_text("this is not an image")
    (b / "noise.png").write_bytes(bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
    (b / "notes.txt").write_text("readme")
    bad += [
        str(a / "zero.jpg"),
        str(a / "truncated.jpg"),
        str(b / "text.jpg"),
        str(b / "noise.png"),
        str(b / "notes.txt"),
    ]
    return {"good": good, "bad": bad}


def test_bad_files_reported_good_ones_kept(tmp_path):
    files = _salted_folder(tmp_path / "data" / "balanced_dataset" / "balanced_dataset")
    data = load_skin_dataset(
        DataArguments(
            data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), test_size=0.25, val_size=0.2
        )
    )
    assert data.class_names == ["Ba  Cellulitis", "Heathy"], (
        "class names kept as spelled, empty class left out"
    )
    assert data.report.empty_classes == ["Empty class"]
    reported = {b.path: b.reason for b in data.report.bad_files}
    assert set(reported) == set(files["bad"])
    assert "empty" in reported[files["bad"][0]] and "truncated" in reported[files["bad"][1]]
    kept = {str(Path(data.report.root) / p) for split in data.dataset.values() for p in split["path"]}
    assert kept == set(files["good"])
    assert data.report.converted_modes.get("L") == 1 and data.report.converted_modes.get("CMYK") == 1
    assert "5 unreadable files skipped" in data.report.summary()
    data.report.save(tmp_path / "report.json")
    assert len(json.loads((tmp_path / "report.json").read_text())["bad_files"]) == 5
    # Every kept image decodes to RGB through the training transform.
    tds = set_transforms(data.dataset, resolve_data_config(None, image_size=32), seed=0)
    for split in tds.values():
        for i in range(len(split)):
            assert split[i]["pixel_values"].shape == (3, 32, 32)


def test_conversions_are_faithful(tmp_path):
    arr16 = np.full((8, 8), 32768, dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "a.png")
    px = np.asarray(load_rgb(str(tmp_path / "a.png")))
    assert px.shape == (8, 8, 3) and 120 <= px[0, 0, 0] <= 135, "16-bit rescaled, not clipped to white"
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert np.asarray(load_rgb(str(tmp_path / "t.png")))[0, 0].tolist() == [255, 255, 255]
    ok, reason, mode = check_image(str(tmp_path / "a.png"))
    assert ok and not reason and mode.startswith("I")


def test_reduced_size_decode_matches_full_decode(tmp_path):
    """DCT-scaled decoding of a large JPEG gives (almost) the same 224 crop as a full decode."""
    from skinacc.data import ImageTransform

    yy, xx = np.mgrid[0:1200, 0:1600]
    arr = np.stack([(xx / 1600 * 255), (yy / 1200 * 255), ((xx + yy) % 256)], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=95)
    cfg = resolve_data_config(None, image_size=224)
    fast = ImageTransform(cfg, train=False, fast_decode=True)._one(str(tmp_path / "big.jpg"), 0).float()
    slow = ImageTransform(cfg, train=False, fast_decode=False)._one(str(tmp_path / "big.jpg"), 0).float()
    assert fast.shape == slow.shape == (3, 224, 224)
    assert (fast - slow).abs().mean() < 3.0


def test_augmentation_keyed_by_epoch_and_sample(tmp_path):
    from skinacc.data import ImageTransform

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(
        tmp_path / "x.png"
    )
    t = ImageTransform(resolve_data_config(None, image_size=48), train=True, seed=5)
    batch = {"image": [str(tmp_path / "x.png")] * 2, "label": [0, 0], "sample_id": [1, 2]}
    e0 = t(batch)["pixel_values"]
    assert torch.equal(e0[0], t(batch)["pixel_values"][0]), "same (seed, epoch, sample) -> same crop"
    t.set_epoch(1)
    e1 = t(batch)["pixel_values"]
    assert not torch.equal(e0[0], e1[0]) or not torch.equal(e0[1], e1[1])


def test_missing_and_empty_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_skin_dataset(DataArguments(data_dir=str(tmp_path / "does-not-exist")))
    (tmp_path / "empty" / "A").mkdir(parents=True)
    (tmp_path / "empty" / "B").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_skin_dataset(DataArguments(data_dir=str(tmp_path / "empty")))
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_skin_dataset(DataArguments(data_dir=str(tmp_path / "flat")))


def test_predefined_split_folders_are_respected(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 10), ("val", 3), ("test", 4)):
        for c in ("Acne", "Heathy"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(d / f"{split}{i}.jpg")
    data = load_skin_dataset(DataArguments(data_dir=str(tmp_path), cache_dir=str(tmp_path / ".c")))
    assert data.report.predefined_splits
    assert {k: len(v) for k, v in data.dataset.items()} == {"train": 20, "validation": 6, "test": 8}
    assert all(p.split("/")[0] == "test" for p in data.dataset["test"]["path"])


def test_hub_dataset_from_disk_with_string_labels(tmp_path):
    import datasets

    rng = np.random.default_rng(2)
    imgs = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(30)]
    imgs.append({"bytes": b"this is not an image", "path": "broken.jpg"})
    labels = ["melanoma", "nevus", "bcc"] * 10 + ["nevus"]
    ds = datasets.Dataset.from_dict(
        {"img": imgs, "dx": labels, "lesion": [f"L{i // 2}" for i in range(31)]},
        features=datasets.Features(
            {"img": datasets.Image(), "dx": datasets.Value("string"), "lesion": datasets.Value("string")}
        ),
    )
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hubds"))
    data = load_skin_dataset(
        DataArguments(
            dataset_name=str(tmp_path / "hubds"),
            image_column="img",
            label_column="dx",
            group_column="lesion",
            test_size=0.3,
            val_size=0.2,
        )
    )
    assert data.class_names == ["bcc", "melanoma", "nevus"]
    assert sum(data.report.split_sizes.values()) == 30
    assert [b.path for b in data.report.bad_files] == [
        "broken.jpg"
    ] and "not an image" in data.report.bad_files[0].reason
    g = {k: set(v["group"]) for k, v in data.dataset.items()}
    assert not g["train"] & g["test"]
    with pytest.raises(ValueError, match="no column"):
        load_skin_dataset(
            DataArguments(dataset_name=str(tmp_path / "hubds"), image_column="image", label_column="dx")
        )


def test_preresize_cache_matches_and_is_reused(tmp_path):
    from skinacc.data import preresize

    rng = np.random.default_rng(3)
    for c in ("A", "B"):
        (tmp_path / "big" / c).mkdir(parents=True)
        for i in range(6):
            yy, xx = np.mgrid[0:480, 0:640]
            # Photograph-like content: smooth shading plus mild sensor noise.
            base = np.stack(
                [
                    xx / 640 * 200 + 20 * i,
                    yy / 480 * 180,
                    128 + 60 * np.sin(xx / 50.0 + i) * np.cos(yy / 70.0),
                ],
                -1,
            )
            arr = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "big" / c / f"{i}.jpg", quality=95)
    data = load_skin_dataset(
        DataArguments(
            data_dir=str(tmp_path / "big"), cache_dir=str(tmp_path / "c"), test_size=0.25, val_size=0.2
        )
    )
    cfg = resolve_data_config(None, image_size=56)
    small = preresize(data.dataset, cfg.resize_size, str(tmp_path / "c"))
    assert {k: len(v) for k, v in small.items()} == {k: len(v) for k, v in data.dataset.items()}
    assert min(small["train"][0]["image"].size) == cfg.resize_size
    assert (
        small["train"]["path"] == data.dataset["train"]["path"]
        and small["train"]["label"] == data.dataset["train"]["label"]
    )
    fast = set_transforms(small, cfg)["test"]
    slow = set_transforms(data.dataset, cfg)["test"]
    for i in range(len(fast)):
        diff = (fast[i]["pixel_values"].float() - slow[i]["pixel_values"].float()).abs().mean()
        assert diff < 2.0, f"pre-resized crop differs by {diff:.2f} grey levels on average"
    cached = sorted((tmp_path / "c" / "preresized").glob("*.arrow"))
    stamp = [p.stat().st_mtime_ns for p in cached]
    preresize(data.dataset, cfg.resize_size, str(tmp_path / "c"))
    assert [p.stat().st_mtime_ns for p in cached] == stamp, "second call reads the cache"


def test_persistent_workers_see_set_epoch(tmp_path):
    """The epoch lives in shared memory: persistent DataLoader workers pick up set_epoch."""
    import datasets

    from skinacc.data import get_transform

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(
        tmp_path / "x.png"
    )
    feats = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["a"]),
            "sample_id": datasets.Value("int64"),
        }
    )
    table = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "x.png")] * 4, "label": [0] * 4, "sample_id": [0, 1, 2, 3]}, features=feats
    )
    ds = set_transforms({"train": table}, resolve_data_config(None, image_size=32), seed=1)["train"]
    loader = build_dataloader(ds, 4, train=False, num_workers=1, persistent_workers=True, drop_last=False)
    t = get_transform(ds)
    t.set_epoch(0)
    e0 = next(iter(loader))["pixel_values"]
    t.set_epoch(7)
    e7 = next(iter(loader))["pixel_values"]
    t.set_epoch(0)
    again = next(iter(loader))["pixel_values"]
    assert torch.equal(e0, again), "same epoch, same crops"
    assert not torch.equal(e0, e7), "the worker saw the new epoch"
