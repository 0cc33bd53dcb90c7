"""How long a stop takes: the checkpoint save alone, and SIGTERM to checkpoint-on-disk of launched runs.

The launcher gives a stopped run 5 s (``accelerate launch``, one process) or 30 s (several processes,
torch's elastic agent) before it SIGKILLs it, so the save at the stop must fit well inside that.

1. Save time of one resumable checkpoint (``skinacc.checkpoint.Checkpointer.save``: model, Adam state,
   RNG states, skinacc state) for models of several sizes, EfficientNet-B3 included, into ``--work``.
2. Launched training runs with data workers, SIGTERM sent to the launcher or to a rank, 1 and 2
   processes: time from the signal to the checkpoint's manifest on disk, and to the launcher's exit.

    python benchmarks/stop_latency.py --work /tmp/stop_latency --out benchmarks/results/stop_latency
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def save_times(model_name: str, work: Path, repeats: int) -> dict:
    """Seconds per ``Checkpointer.save`` of ``model_name`` with Adam state (one process, CPU)."""
    import timm
    import torch
    from accelerate import Accelerator

    from skinacc.checkpoint import Checkpointer
    from skinacc.engine import TrainState
    from skinacc.rundir import folder_bytes

    acc = Accelerator(cpu=True)
    model = timm.create_model(model_name, pretrained=False, num_classes=35)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model, opt = acc.prepare(model, opt)
    model(torch.randn(2, 3, 64, 64)).sum().backward()  # Adam's moments exist after a step
    opt.step()
    state = TrainState()
    ckpt = Checkpointer(acc, work / model_name, {"model": model_name}, {"train_state": state}, 1, {})
    seconds = []
    for i in range(repeats):
        state.global_step = i + 1
        t0 = time.perf_counter()
        path = ckpt.save()
        os.sync()  # on disk, not only in the page cache
        seconds.append(time.perf_counter() - t0)
    return {
        "model": model_name,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "checkpoint_MB": round(folder_bytes(path) / 1e6, 1),
        "save_s_median": round(statistics.median(seconds), 3),
        "save_s_max": round(max(seconds), 3),
        "repeats": repeats,
    }


def _train_cmd(out: Path, processes: int, model: list[str]) -> tuple[list[str], dict]:
    cfg = "cpu_2proc.yaml" if processes == 2 else "cpu.yaml"
    cmd = [ACCELERATE, "launch", "-q", "--config_file", str(REPO / "accelerate_configs" / cfg)]
    cmd += ["--mixed_precision", "no"] if processes == 2 else []
    cmd += ["--num_cpu_threads_per_process", "1", str(REPO / "recipes" / "train.py"), *model]
    cmd += [
        "--synthetic_num_classes",
        "4",
        "--synthetic_images_per_class",
        "400",
        "--synthetic_image_size",
        "64",
    ]
    cmd += ["--batch_size", "8", "--num_workers", "1", "--report_to", "none", "--epochs", "50"]
    cmd += ["--early_stopping_patience", "0", "--output_dir", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    if processes == 2:
        env["ACCELERATE_USE_CPU"] = "1"
    return cmd, env


def _manifests(out: Path) -> set[str]:
    return {p.parent.name for p in (out / "checkpoints").glob("step_*/skinacc_checkpoint.json")}


def stop_latency(out: Path, processes: int, target: str, model: list[str], warmup_s: float) -> dict:
    """SIGTERM to the launcher or to rank 0 ``warmup_s`` after the first checkpoint; figures in seconds."""
    import psutil

    cmd, env = _train_cmd(out, processes, model)
    # A file, not a pipe: an unread pipe fills up with progress bars and blocks the run.
    log = (out.parent / f"{out.name}.log").open("w+")
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while not _manifests(out):
            if launcher.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"the run ended before its first checkpoint:\n{log.read()[-3000:]}")
            time.sleep(0.05)
        time.sleep(warmup_s)  # into the next epoch's steps
        before = _manifests(out)
        ranks = [
            c
            for c in psutil.Process(launcher.pid).children(recursive=True)
            if "train.py" in " ".join(c.cmdline())
        ]
        ranks = [c for c in ranks if c.parent().pid not in {r.pid for r in ranks}]  # not their workers
        victim = launcher.pid if target == "launcher" else min(r.pid for r in ranks)
        t0 = time.perf_counter()
        os.kill(victim, signal.SIGTERM)
        saved = None
        while launcher.poll() is None:
            if saved is None and _manifests(out) - before:
                saved = time.perf_counter() - t0
            time.sleep(0.01)
        exited = time.perf_counter() - t0
        if saved is None and _manifests(out) - before:
            saved = exited
        log.seek(0)
        text = log.read()
    finally:
        log.close()
        if launcher.poll() is None:
            launcher.kill()
    return {
        "processes": processes,
        "signal_to": target,
        "model": model[1],
        "sigterm_to_checkpoint_s": None if saved is None else round(saved, 3),
        "sigterm_to_launcher_exit_s": round(exited, 3),
        "launcher_exit": launcher.returncode,
        "stopped_line": found.group(1) if (found := re.search(r"(stopped by [^\r\n]*)", text)) else None,
        "worker_crash": "killed by signal" in text,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--save_models", nargs="*", default=["test_efficientnet", "tf_efficientnet_lite0", "efficientnet_b3"]
    )
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    saves = [save_times(m, args.work / "saves", args.repeats) for m in args.save_models]
    for r in saves:
        print(json.dumps(r), flush=True)
    runs = []
    tiny = ["--model", "test_efficientnet", "--no_pretrained", "--image_size", "48"]
    b3 = ["--model", "efficientnet_b3", "--no_pretrained", "--image_size", "64"]
    for model in (tiny, b3):
        for processes in (1, 2):
            for target in ("launcher", "rank"):
                out = args.work / f"{model[1]}-{processes}proc-{target}"
                subprocess.run(["rm", "-rf", str(out)], check=True)
                r = stop_latency(out, processes, target, model, warmup_s=1.0)
                print(json.dumps(r), flush=True)
                runs.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "stop_latency.json").write_text(
        json.dumps({"meta": meta, "saves": saves, "runs": runs}, indent=2)
    )
    print(f"wrote {args.out / 'stop_latency.json'}")


if __name__ == "__main__":
    main()
