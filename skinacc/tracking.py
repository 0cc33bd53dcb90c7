"""What a run records: launch facts, per-epoch history files, summary lines, and trackers.

Trackers go through accelerate (``Accelerator(log_with=...)``). Everything here that writes files is
meant to run on the main process only; the callers gate it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["format_epoch_line", "launch_info", "run_identity", "write_history", "write_json"]

logger = logging.getLogger(__name__)


def launch_info(accelerator) -> dict[str, Any]:
    """Launch settings as the accelerator sees them (they come from accelerate_configs/*.yaml)."""
    import torch

    dynamo = getattr(accelerator.state, "dynamo_plugin", None)
    backend = getattr(dynamo, "backend", None)
    backend = getattr(backend, "value", backend)
    device = accelerator.device
    return {
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type.value if hasattr(accelerator.distributed_type, "value") else accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision,
        "dynamo_backend": str(backend or "no").lower(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": str(torch.__version__),
    }


def run_identity(model: str, launch: dict[str, Any], data_source: str, channels_last: bool = False) -> dict[str, Any]:
    """Name, group and tags derived from what varies between runs, so W&B can compare them side by side."""
    prec = launch["mixed_precision"] if launch["mixed_precision"] != "no" else "fp32"
    compiled = launch["dynamo_backend"] not in ("no", "none")
    suffix = ("-cl" if channels_last else "") + ("-compile" if compiled else "")
    name = f"{model}-{launch['num_processes']}x{launch['device']}-{prec}{suffix}"
    tags = [model, prec, f"{launch['num_processes']}proc", launch["device"]]
    if channels_last:
        tags.append("channels_last")
    if compiled:
        tags.append(f"compile-{launch['dynamo_backend']}")
    return {"name": name, "group": f"{model}-{data_source.split(' ')[0]}", "tags": tags}


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)
    return path


def write_history(output_dir: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Write the per-epoch history as ``history.json`` and ``history.csv``."""
    out = Path(output_dir)
    write_json(out / "history.json", history)
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = out / ".history.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, out / "history.csv")


def format_epoch_line(r: dict[str, Any], epochs: int) -> str:
    """The one summary line printed per epoch."""
    return (
        f"epoch {r['epoch'] + 1}/{epochs} | loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f} | "
        f"val_loss {r['val_loss']:.4f} val_acc {r['val_accuracy']:.4f} | lr {r['lr']:.2e} | "
        f"{r['images_per_sec']:.1f} img/s | data wait {r['data_wait_pct']:.1f}% | {r['epoch_seconds']:.1f} s | "
        f"peak {r['peak_mem_mb']:.0f} MB" + (" | best" if r.get("is_best") else "")
    )
