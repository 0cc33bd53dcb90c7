"""Each benchmark recipe runs at tiny size and writes numbers and plots (no speed is asserted)."""

import json

import pytest
from PIL import Image

from skinacc.data import SyntheticSpec, generate_synthetic_dataset

from .conftest import REPO

pytestmark = pytest.mark.slow


def _run(script: str, args: list[str]):
    import importlib.util
    import sys

    sys.path.insert(0, str(REPO / "recipes"))
    try:
        spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / "recipes" / script)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(mod)
        return mod.main(args)
    finally:
        sys.path.remove(str(REPO / "recipes"))


def test_benchmark_dataloading_tiny(tmp_path):
    root = generate_synthetic_dataset(SyntheticSpec(num_classes=3, images_per_class=24, image_size=96), tmp_path / "c")
    out = tmp_path / "bench"
    _run("benchmark_dataloading.py", ["--data_dir", str(root), "--output_dir", str(out), "--large_size", "400", "--large_per_class", "24", "--batch_size", "8", "--max_images", "24", "--image_size", "64", "--repeats", "1"])
    data = json.loads((out / "loading.json").read_text())
    rows = {(r["image_set"], r["strategy"]): r for r in data["results"]}
    for s in ("torchvision_imagefolder", "skinacc", "preresized_cache", "manual_split", "single_process"):
        for image_set in ("small", "large"):
            assert rows[(image_set, s)]["images_per_sec"] > 0, (image_set, s)
    assert "skipped" in rows[("small", "gpu_decode")] or rows[("small", "gpu_decode")]["images_per_sec"] > 0
    assert (out / "loading.csv").read_text().count("\n") == len(data["results"]) + 1
    assert Image.open(out / "loading.png").size[0] > 400
