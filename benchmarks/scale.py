"""Scale: start-up on large folders, shard preparation, streaming vs map-style loading, 2 machines vs 1,
and prediction over 100k images (speed and peak memory).

Large inputs are the shared ISIC set (1,646 dermoscopic JPEGs) replicated as hard links in --work (no
image is copied; the page cache holds the 1,646 originals, so disk speed is not what is measured).
Run alone: every figure is a wall time on this machine.

    python benchmarks/scale.py --work /tmp/scale --out benchmarks/results/scale
    python benchmarks/scale.py --sections predict --predict_images 100000

Sections (``--sections``): ``startup`` (``load_skin_dataset`` on 1.6k / 16k / 160k files, cold = a
fresh skinacc cache, so every image is verified, and warm = the same again), ``shards``
(``recipes/prepare_shards.py`` images/s), ``loaders`` (training batches/s from the same shards, streamed
vs map-style, same transform and workers), ``multinode`` (a tiny run as 2 "machines" x 1 process vs 1
machine x 2 processes, gloo), ``predict`` (``recipes/predict.py`` images/s and peak memory of the
process tree, a tiny model so decoding dominates, and the shipped-size Lite0 for comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ISIC = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def replicate(work: Path, factor: int, limit: int | None = None) -> Path:
    """``<work>/links_x<factor>/<class>/r<i>_<name>``: hard links to the ISIC images (made once)."""
    dst = work / (f"links_x{factor}" + ("" if limit is None else f"_{limit}"))
    done = dst / ".complete"
    if done.exists():
        return dst
    if dst.exists():
        shutil.rmtree(dst)
    files = sorted(p for p in ISIC.rglob("*.jpg"))
    n = 0
    for r in range(factor):
        for f in files:
            if limit is not None and n >= limit:
                break
            d = dst / f.parent.name
            d.mkdir(parents=True, exist_ok=True)
            os.link(f, d / f"r{r}_{f.name}")
            n += 1
    done.write_text(str(n))
    return dst


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def startup(work: Path, factors: list[int]) -> list[dict]:
    from skinacc.config import DataArguments
    from skinacc.data import load_skin_dataset

    rows = []
    for factor in factors:
        folder = replicate(work, factor)
        for level in ("header", "full"):
            if level == "full" and factor > 10:
                continue  # 160k full decodes: ~15 min on 2 cores; the 1.6k and 16k rows give the rate
            cache = Path(tempfile.mkdtemp(dir=work, prefix="cache-"))
            args = DataArguments(data_dir=str(folder), verify_images=level, cache_dir=str(cache))
            cold, data = _timed(lambda a=args: load_skin_dataset(a))
            warm, _ = _timed(lambda a=args: load_skin_dataset(a))
            rows.append(
                {"images": data.report.num_images, "verify_images": level, "cold_s": cold, "warm_s": warm}
            )
            print(rows[-1], flush=True)
            shutil.rmtree(cache)
    return rows


def shards(work: Path, factor: int) -> dict:
    folder = replicate(work, factor)
    out = work / f"shards_x{factor}"
    if out.exists():
        shutil.rmtree(out)
    cache = work / "shard-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "recipes" / "prepare_shards.py"), "--data_dir", str(folder),
           "--output_dir", str(out), "--verify_images", "none", "--cache_dir", str(cache)]  # fmt: skip
    secs, _ = _timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
    meta = json.loads((out / "skinacc_shards.json").read_text())
    size = sum(p.stat().st_size for p in (out / "data").iterdir())
    src = sum(f.stat().st_size for f in ISIC.rglob("*.jpg")) * factor
    n = sum(v["num_examples"] for v in meta["splits"].values())
    res = {
        "images": n,
        "recipe_seconds": secs,
        "write_seconds": meta["seconds"],
        "images_per_sec": n / meta["seconds"],
        "shards_mb": size / 2**20,
        "source_mb": src / 2**20,
        "shards": sum(v["num_shards"] for v in meta["splits"].values()),
    }
    print(res, flush=True)
    return res


def loaders(work: Path, factor: int, batches: int, batch_size: int, workers_list: list[int]) -> list[dict]:
    import datasets
    import torch  # noqa: F401

    from skinacc.config import DataArguments
    from skinacc.data import ImageTransform, build_dataloader, set_transforms
    from skinacc.data.data_config import DataConfig
    from skinacc.data.streaming import StreamingLoader, load_streaming

    out = work / f"shards_x{factor}"
    cfg = DataConfig(image_size=224, resize_size=256)
    rows = []
    for workers in workers_list:
        stream = load_streaming(DataArguments(dataset_name=str(out), streaming=True))
        sl = StreamingLoader(
            stream.dataset["train"], ImageTransform(cfg, train=True), batch_size, stream.sizes["train"],
            train=True, workers=workers,
        )  # fmt: skip
        mapped = datasets.load_dataset(str(out), cache_dir=str(work / "hf-cache"))
        ds = set_transforms(datasets.DatasetDict({"train": mapped["train"]}), cfg)["train"]
        dl = build_dataloader(ds, batch_size, train=True, num_workers=workers, persistent_workers=False)
        for name, loader in (("streaming", sl), ("map-style", dl)):
            it = iter(loader)
            next(it)  # start-up (workers, first shard) left out
            t = time.perf_counter()
            n = 0
            for _ in range(batches):
                n += len(next(it)["labels"])
            secs = time.perf_counter() - t
            rows.append(
                {"loader": name, "workers": workers, "images": n, "seconds": secs, "images_per_sec": n / secs}
            )
            print(rows[-1], flush=True)
            del it
        sl.close()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multinode(work: Path) -> dict:
    args = ["--model", "test_efficientnet", "--no_pretrained", "--synthetic_num_classes", "4",
            "--synthetic_images_per_class", "150", "--synthetic_image_size", "96", "--image_size", "64",
            "--batch_size", "16", "--num_workers", "0", "--report_to", "none", "--epochs", "3"]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONUNBUFFERED": "1"}
    one = work / "mn_one"
    shutil.rmtree(one, ignore_errors=True)
    cmd = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / "cpu_2proc.yaml"),
           "--mixed_precision", "no", "--num_cpu_threads_per_process", "1", str(REPO / "recipes" / "train.py"),
           *args, "--output_dir", str(one)]  # fmt: skip
    t_one, _ = _timed(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=REPO))
    two = work / "mn_two"
    shutil.rmtree(two, ignore_errors=True)
    port = _free_port()
    node_env = {
        **env,
        "SLURM_JOB_NUM_NODES": "2",
        "PROCESSES_PER_NODE": "1",
        "MAIN_PROCESS_IP": "127.0.0.1",
        "MAIN_PROCESS_PORT": str(port),
        "ACCELERATE_CONFIG": "accelerate_configs/cpu_2proc.yaml",
        "LAUNCH_ARGS": "--mixed_precision no --num_cpu_threads_per_process 1",
        "PATH": f"{Path(ACCELERATE).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def both():
        ps = [
            subprocess.Popen(
                [
                    "bash",
                    str(REPO / "recipes" / "slurm" / "launch_node.sh"),
                    str(REPO / "recipes" / "train.py"),
                    *args,
                    "--output_dir",
                    str(two),
                ],
                env={**node_env, "SLURM_NODEID": str(r)},
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for r in (0, 1)
        ]
        assert [p.wait() for p in ps] == [0, 0]

    t_two, _ = _timed(both)
    h1 = json.loads((one / "history.json").read_text())
    h2 = json.loads((two / "history.json").read_text())
    same = [(a["train_loss"], a["val_loss"]) for a in h1] == [(b["train_loss"], b["val_loss"]) for b in h2]
    res = {
        "one_machine_2proc_s": t_one,
        "two_machines_1proc_s": t_two,
        "train_seconds_one": sum(r["epoch_seconds"] for r in h1),
        "train_seconds_two": sum(r["epoch_seconds"] for r in h2),
        "same_history": same,
    }
    print(res, flush=True)
    return res


def _tree_pss(pid: int) -> int:
    """Proportional set size of a process and its children: forked workers share pages with their
    parent, and RSS would count those once per process."""
    import contextlib

    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += q.memory_full_info().pss
    return total


def _run_sampled(cmd: list[str]) -> tuple[float, int, str]:
    """Wall time and peak memory (PSS of the process and its children, sampled every 0.2 s) of a command."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-2000:]}")
    return time.perf_counter() - t, peak, out


def tiny_model(work: Path, size: int) -> Path:
    """A timm folder of timm's 0.1M-parameter test model (random weights, ISIC classes, 224 px):
    prediction speed then measures reading and decoding, not the network."""
    import timm

    from skinacc.artifact import save_timm_folder
    from skinacc.data import resolve_data_config

    folder = work / f"tiny_model_{size}"
    if (folder / "model.safetensors").is_file():
        return folder
    names = sorted(d.name for d in ISIC.iterdir() if d.is_dir())
    model = timm.create_model("test_efficientnet", num_classes=len(names))
    save_timm_folder(model, folder, names, resolve_data_config(model, size, round(size / 0.875)))
    return folder


def _predict_once(model: str, folder: Path, out: Path, label: str) -> dict:
    """One ``predict.py --tta none`` run over ``folder``: images, time, rate and peak memory."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "recipes" / "predict.py"), "--model", model, "--inputs", str(folder),
           "--output", str(out), "--tta", "none"]  # fmt: skip
    secs, peak, _ = _run_sampled(cmd)
    lines = sum(1 for _ in out.open()) - 1
    row = {"model": label, "images": lines, "seconds": secs, "images_per_sec": lines / secs,
           "peak_pss_mb": peak / 2**20}  # fmt: skip
    print(row, flush=True)
    return row


def predict(work: Path, counts: list[int], lite0: str | None, lite0_images: int, size: int) -> list[dict]:
    model = str(tiny_model(work, size))
    label = f"test_efficientnet (tiny, {size} px)"
    rows = [
        _predict_once(model, replicate(work, -(-n // 1646), limit=n), work / f"pred_{n}.csv", label)
        for n in counts
    ]
    if lite0:
        folder = replicate(work, 1, limit=lite0_images)
        rows.append(_predict_once(lite0, folder, work / "pred_lite0.csv", f"{lite0} (tta none)"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/scale")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale"))
    p.add_argument("--sections", nargs="+", default=["startup", "shards", "loaders", "multinode", "predict"])
    p.add_argument(
        "--factors", nargs="+", type=int, default=[1, 10, 100], help="startup: replication factors"
    )
    p.add_argument("--shard_factor", type=int, default=10, help="shards/loaders: replication factor")
    p.add_argument("--loader_batches", type=int, default=40)
    p.add_argument("--loader_workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--predict_images", nargs="+", type=int, default=[10000, 100000])
    p.add_argument("--tiny_size", type=int, default=112, help="predict: the tiny model's input size")
    p.add_argument("--lite0", default=str(REPO / "outputs" / "isic8-dermoscopy-5ep"))
    p.add_argument("--lite0_images", type=int, default=1646)
    args = p.parse_args()
    if not (ISIC / "labels.csv").is_file():
        sys.exit(f"the shared ISIC set is not at {ISIC}")
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "results.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {}
    results["machine"] = (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    for section in args.sections:
        t = time.time()
        if section == "startup":
            results["startup"] = startup(work, args.factors)
        elif section == "shards":
            results["shards"] = shards(work, args.shard_factor)
        elif section == "loaders":
            results["loaders"] = loaders(
                work, args.shard_factor, args.loader_batches, 64, args.loader_workers
            )
        elif section == "multinode":
            results["multinode"] = multinode(work)
        elif section == "predict":
            lite0 = args.lite0 if Path(args.lite0).is_dir() else None
            results["predict"] = predict(work, args.predict_images, lite0, args.lite0_images, args.tiny_size)
        else:
            sys.exit(f"--sections: unknown {section!r}")
        results.setdefault("commands", {})[section] = " ".join(sys.argv)
        print(f"{section}: {time.time() - t:.0f} s", flush=True)
        res_file.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
