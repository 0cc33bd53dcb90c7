"""Grad-CAM explanations (skinacc.explain), the demo's classifier (skinacc.demo) and the web page in a
real headless Chromium (skipped, with the reason, where no browser is installed)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from skinacc.data.data_config import DataConfig

from .conftest import ISIC8, REPO, cli

pytest.importorskip("pytorch_grad_cam", reason='grad-cam not installed (pip install "skinacc[explain]")')

from skinacc.explain import Explainer, default_cam_layer, explain_sources, select_cases

PLAIN = DataConfig(
    image_size=32,
    resize_size=32,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    interpolation="bilinear",
    crop_pct=1.0,
)


class RedGreen(nn.Module):
    """Class 0 is "how red", class 1 "how green": the evidence for each lies where that colour is."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0  # red
            self.features.weight[1, 1] = 1.0  # green
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, x):
        return self.fc(self.act(self.features(x)).mean((2, 3)))


def _red_green_image() -> torch.Tensor:
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[0, 0, :12, :12] = 255  # red square, top left
    img[0, 1, 20:, 20:] = 255  # green square, bottom right
    return img


def test_gradcam_points_at_the_evidence_of_the_class_it_explains():
    model = RedGreen()
    explainer = Explainer(model, PLAIN)
    assert explainer.layer == "act"  # the last spatial feature map
    img = _red_green_image()
    red, green = explainer(img, [0]), explainer(img, [1])
    for res, inside, outside in (
        (red, (slice(0, 12), slice(0, 12)), (slice(20, 32), slice(20, 32))),
        (green, (slice(20, 32), slice(20, 32)), (slice(0, 12), slice(0, 12))),
    ):
        cam = res.cams[0]
        assert cam.shape == (32, 32)
        assert cam[inside].mean() > 0.9 and cam[outside].mean() < 0.1
    # default target: the predicted class (more red than green here)
    assert explainer(img).targets == [0]
    assert red.probs.shape == (1, 2) and np.isclose(red.probs.sum(), 1)
    # the hooks are gone after each call: plain forward passes keep no activations
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("test_efficientnet", "bn2"), ("resnet18", "layer4"), ("mobilenetv3_small_050", "blocks")],
)
def test_default_layer_is_the_last_feature_map(arch, layer):
    model = timm.create_model(arch, num_classes=3)
    assert default_cam_layer(model, 64) == layer
    cfg = DataConfig(64, 73, (0.5,) * 3, (0.5,) * 3, "bilinear", 0.875)
    res = Explainer(model, cfg)(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert res.cams.shape == (2, 64, 64) and res.cams.min() >= 0 and res.cams.max() <= 1.0 + 1e-6


def test_bad_layer_method_and_non_cnn_are_refused_clearly():
    model = timm.create_model("test_efficientnet", num_classes=3)
    cfg = DataConfig(64, 73, (0.5,) * 3, (0.5,) * 3, "bilinear", 0.875)
    with pytest.raises(ValueError, match=r"--cam_layer='nope'.*bn2"):
        Explainer(model, cfg, layer="nope")
    with pytest.raises(ValueError, match=r"--cam_method='gradcamz'.*gradcam\+\+"):
        Explainer(model, cfg, method="gradcamz")
    vit = timm.create_model("test_vit", num_classes=3)
    with pytest.raises(ValueError, match="not a CNN"):
        default_cam_layer(vit, 160)
    assert Explainer(model, cfg, layer="blocks", method="gradcam++").layer == "blocks"


def test_explain_sources_reports_unreadable_files(tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(_red_green_image()[0].permute(1, 2, 0).numpy()).save(good)
    (tmp_path / "b.png").write_text("not an image")
    out = explain_sources(
        Explainer(RedGreen(), PLAIN), [str(good), str(tmp_path / "b.png"), str(good)], [1, 0, 0]
    )
    assert [("error" in o) for o in out] == [False, True, False]
    assert out[0]["target"] == 1 and out[2]["target"] == 0 and out[0]["overlay"].shape == (32, 32, 3)
    assert out[0]["overlay"].dtype == np.uint8 and "could not decode" in out[1]["error"]


def test_select_cases_ranks_by_confidence():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    cases = select_cases(labels, probs, 2)
    assert cases[0] == {"errors": [1], "correct": [0, 2]}
    assert cases[1] == {"errors": [4], "correct": [3]}


# ----------------------------------------------------------------------------------------------------
# The demo


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "not_image": d / "notes.jpg",
        "empty": d / "empty.png",
        "truncated": d / "cut.jpg",
        "huge": d / "big.png",
    }
    files["not_image"].write_text("this is not an image")
    files["empty"].write_bytes(b"")
    buf = d / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf)
    files["truncated"].write_bytes(buf.read_bytes()[:2000])
    Image.new("RGB", (3000, 2000)).save(files["huge"])  # 6 MP: above the 5 MP cap the tests set
    return files


def _classifier(trained_run, **kw):
    from skinacc.artifact import load_model
    from skinacc.demo import ImageClassifier

    return ImageClassifier(load_model(str(trained_run)), max_pixels=5_000_000, **kw)


def _an_image(trained_run) -> str:
    root = json.loads((trained_run / "data_report.json").read_text())["root"]
    return str(sorted(Path(root).rglob("*.jpg"))[0])


def test_demo_classifier_matches_predict_and_explains(trained_run):
    from skinacc.artifact import load_model
    from skinacc.inference import predict_images

    image = _an_image(trained_run)
    clf = _classifier(trained_run, top_k=2)
    pred = clf(image)
    m = load_model(str(trained_run))
    ref = predict_images(m.model, [image], m.label_names, m.data_cfg, top_k=2, tta=m.tta, progress=False)[0]
    assert [lab for lab, _ in pred.top_k] == [t["label"] for t in ref["top_k"]]
    assert np.allclose([p for _, p in pred.top_k], [t["prob"] for t in ref["top_k"]], atol=1e-5)
    assert pred.error is None and pred.view.shape == pred.overlay.shape == (48, 48, 3)
    # predict_images runs channels-last by default: the contiguous layout gives the same probabilities
    nchw = predict_images(
        m.model, [image], m.label_names, m.data_cfg, top_k=2, tta=m.tta, progress=False, channels_last=False
    )[0]
    assert next(p for p in m.model.parameters() if p.ndim == 4).is_contiguous(), "the NCHW path ran"
    assert [t["label"] for t in nchw["top_k"]] == [t["label"] for t in ref["top_k"]]
    assert np.allclose([t["prob"] for t in nchw["top_k"]], [t["prob"] for t in ref["top_k"]], atol=1e-5)
    assert _classifier(trained_run, explain=False)(image).overlay is None


def test_demo_bad_uploads_get_a_message_not_a_traceback(trained_run, bad_files):
    clf = _classifier(trained_run, explain=False)
    expect = {
        "not_image": "is not an image this demo can read",
        "empty": "is empty",
        "truncated": "could not be decoded",
        "huge": "3000x2000 pixels",
    }
    for kind, text in expect.items():
        pred = clf(bad_files[kind])
        assert pred.top_k == [] and text in pred.error, (kind, pred.error)
        assert "Traceback" not in pred.error and str(bad_files[kind].parent) not in pred.error
    assert "Upload a" in clf(None).error


def test_intended_use_comes_from_the_model_card(trained_run, tmp_path):
    from skinacc.demo import intended_use

    text = intended_use(str(trained_run))
    assert "Intended for research" in text and "##" not in text
    # a plain model folder without a README.md (the run's best/ outside its run)
    bare = tmp_path / "bare"
    shutil.copytree(trained_run / "best", bare)
    assert "no model card" in intended_use(str(bare))
    (bare / "README.md").write_text("# m\n\n## Intended use\nOnly for tests.\n\n## Other\nx\n")
    assert intended_use(str(bare)) == "Only for tests."


# ----------------------------------------------------------------------------------------------------
# The page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("SKINACC_SCREENSHOTS", REPO / "build" / "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")
def test_app_in_headless_chromium(trained_run, bad_files, tmp_path):
    """Upload a shared ISIC image (a synthetic one where the set is absent): the page's top-1 equals
    predict.py's; a non-image gets a message; screenshots of both go to build/screenshots/."""
    pytest.importorskip("gradio", reason='gradio not installed (pip install "skinacc[app]")')
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")

    real = sorted((ISIC8 / "melanoma").glob("*.jpg"))
    image = real[0] if real else Path(_an_image(trained_run))
    preds = tmp_path / "p.json"
    cli("predict", ["--model", str(trained_run), "--inputs", str(image), "--output", str(preds)])
    want = json.loads(preds.read_text())[0]["top_k"][0]["label"]

    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    app = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "recipes" / "app.py"),
            "--model",
            str(trained_run),
            "--server_port",
            str(port),
            "--examples",
            str(image),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert app.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
                assert time.time() < deadline, "app did not start in 240 s"
                time.sleep(1)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                # no sandbox as root; no background connections (the network is closed here)
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            assert "Not a medical device" in page.inner_text("#notice")
            assert "Intended for research" in page.inner_text("#intended-use")
            upload = page.locator("#upload input[type=file]")
            upload.set_input_files(str(image), timeout=120_000)
            page.wait_for_function(
                "document.querySelector('#status').innerText.includes('Top-1')", timeout=120_000
            )
            status = page.inner_text("#status")
            assert f"Top-1: {want} (" in status, (status, want)
            page.wait_for_selector("#cam img", timeout=60_000)
            page.wait_for_timeout(1000)  # let the page's "pending" shading fade before the screenshot
            page.screenshot(path=str(SCREENSHOTS / "app_prediction.png"), full_page=True)

            page.locator("#upload button[aria-label=Clear]").click()
            upload.set_input_files(str(bad_files["not_image"]), timeout=120_000)
            page.wait_for_function(
                "document.querySelector('#status').innerText.includes('Cannot classify')", timeout=120_000
            )
            status = page.inner_text("#status")
            assert "notes.jpg is not an image this demo can read" in status, status
            assert "Traceback" not in page.content()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SCREENSHOTS / "app_bad_upload.png"), full_page=True)
            browser.close()
        for name in ("app_prediction.png", "app_bad_upload.png"):
            assert Image.open(SCREENSHOTS / name).size[0] >= 1000
    finally:
        app.terminate()
        app.wait(30)
        log.close()


# ----------------------------------------------------------------------------------------------------
# The demo under load: memory stays flat (issue #24)


@pytest.fixture(scope="module")
def served_model(tmp_path_factory) -> tuple[Path, list[Path]]:
    """An untrained 8-class test model served at 160 px with dihedral TTA (what a deployed model does
    per request, in less time), and a few dermoscopy-sized JPEGs."""
    from skinacc.artifact import save_timm_folder
    from skinacc.data import resolve_data_config

    d = tmp_path_factory.mktemp("served")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=8).eval()
    save_timm_folder(
        model, d / "model", [f"class_{i}" for i in range(8)], resolve_data_config(model, 160),
        inference={"tta": "dihedral", "temperature": 1.0},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    images = []
    for i in range(10):
        images.append(d / f"photo_{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (450, 600, 3), dtype=np.uint8)).save(images[-1], quality=90)
    return d / "model", images


def test_the_demo_runs_the_model_on_one_thread_whoever_calls(served_model):
    """A web server answers requests on many threads; each thread that ran the model grew its own
    allocator arena and OpenMP team, so the demo's memory rose with every Grad-CAM request."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from skinacc.artifact import load_model
    from skinacc.demo import ImageClassifier

    folder, images = served_model
    clf = ImageClassifier(load_model(str(folder)))
    ran_on = set()
    hook = clf.model.register_forward_hook(lambda *a: ran_on.add(threading.get_ident()))
    callers = set()

    def call(path):
        callers.add(threading.get_ident())
        return clf(path)

    with ThreadPoolExecutor(8) as pool:
        preds = list(pool.map(call, images * 2))
    hook.remove()
    clf.close()
    assert all(p.error is None and p.overlay is not None for p in preds)
    assert len(callers) > 1 and len(ran_on) == 1 and not ran_on & callers


@pytest.mark.slow
def test_the_served_demo_keeps_flat_memory_over_hundreds_of_explanations(served_model):
    """recipes/app.py behind Gradio, 400 uploads with Grad-CAM, 25 at a time, as `gradio_client` sends
    them. Its resident memory grew ~80 MB between uploads 100 and 400 before the fix (about +1 MB per
    request with a Lite0 model), ~20 MB after. Also: the port comes from GRADIO_SERVER_PORT."""
    import psutil
    from gradio_client import Client, handle_file

    folder, images = served_model
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": str(port)}
    app = subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "app.py"), "--model", str(folder), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                assert app.poll() is None, "the app exited"
                assert time.time() < deadline, f"no app on GRADIO_SERVER_PORT={port} after 240 s"
                time.sleep(1)

        def classify(i: int) -> str:
            return client.predict(handle_file(str(images[i % len(images)])), api_name="/classify")[0]

        from concurrent.futures import ThreadPoolExecutor

        rss = []
        with ThreadPoolExecutor(25) as pool:
            for wave in range(8):
                texts = list(pool.map(classify, range(50 * wave, 50 * wave + 50)))
                assert all(t.startswith("Top-1") and "Grad-CAM" in t for t in texts), texts[0]
                rss.append(psutil.Process(app.pid).memory_info().rss / 1e6)
    finally:
        app.terminate()
        app.wait(30)
    growth = rss[-1] - rss[1]  # after 100 uploads (warm) to after 400
    assert growth < 50, f"resident memory after each 50 uploads (MB): {[round(r) for r in rss]}"
