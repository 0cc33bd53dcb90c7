"""Latency of one prediction in the web demo, with and without Grad-CAM: p50/p95 over N requests,
through the app's own function and through HTTP (Gradio's API, as a browser or ``gradio_client`` calls it).

    python benchmarks/app_latency.py --model outputs/isic8 --images ../shared/data/isic8-dermoscopy \
        --out benchmarks/results/app_latency

Each row builds the page of ``skinacc app`` (``skinacc.demo.make_demo``) for the model with ``--explain`` on or off;
the function rows call its handler (file -> checks, decode, resize and crop, TTA forward passes, and
Grad-CAM's forward and backward), the HTTP rows launch it on localhost and call ``/classify`` with
``gradio_client`` (adds the upload, queueing and JSON/image encoding). Requests cycle over the first N
images of ``--images``, the two pages' requests interleaved; 3 warm-up requests each are not counted. Writes ``result.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from skinacc.config.inference import AppArguments
from skinacc.demo import make_demo
from skinacc.inference import collect_images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms)}


def measure(model: str, images: list[str], n: int, http: bool, tta: str | None) -> list[dict]:
    """Rows for Grad-CAM off and on, the two pages' requests interleaved (so both see the same machine)."""
    demos = {
        e: make_demo(AppArguments(model=model, explain=e, device="cpu", tta=tta))[0] for e in (False, True)
    }

    def timed(calls: dict) -> dict[bool, list[float]]:
        for call in calls.values():
            for path in images[:3]:  # warm-up, not counted
                call(path)
        times: dict[bool, list[float]] = {e: [] for e in calls}
        for i in range(n):
            for e, call in calls.items():
                t0 = time.perf_counter()
                text = call(images[i % len(images)])[0]
                times[e].append(time.perf_counter() - t0)
                assert text.startswith("Top-1"), text
        return times

    rows = []
    for e, t in timed({e: d.skinacc_handler for e, d in demos.items()}).items():
        rows.append({"via": "function", "explain": e, **_stats(t)})
    if http:
        from gradio_client import Client, handle_file

        clients = {}
        try:
            for e, d in demos.items():
                port = _free_port()
                d.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                clients[e] = lambda path, c=client: c.predict(handle_file(path), api_name="/classify")
            for e, t in timed(clients).items():
                rows.append({"via": "HTTP (gradio_client)", "explain": e, **_stats(t)})
        finally:
            for d in demos.values():
                d.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="As recipes/app.py --model.")
    ap.add_argument("--images", nargs="+", required=True, help="Files, folders or globs.")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--tta", default=None, help="Override the model's stored test-time augmentation.")
    ap.add_argument("--no_http", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/app_latency")
    args = ap.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    images = collect_images(args.images)[: args.requests]
    rows = measure(args.model, images, args.requests, not args.no_http, args.tta)
    for r in rows:
        print(json.dumps(r))
    from skinacc.artifact import load_model

    m = load_model(args.model)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU",
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        "model": args.model,
        "architecture": m.model.pretrained_cfg.get("architecture"),
        "input_size": m.data_cfg.image_size,
        "tta": args.tta or m.tta,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(res, indent=2))
    lines = [
        f"{res['architecture']} at {res['input_size']} px, TTA {res['tta']}; {res['machine']}",
        "",
        "| via | Grad-CAM | p50 ms | p95 ms | requests |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['via']} | {'on' if r['explain'] else 'off'} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['n']} |"
        for r in rows
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
