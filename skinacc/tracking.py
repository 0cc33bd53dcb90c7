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

from skinacc.config import read_run_config

__all__ = [
    "compare_records",
    "flat_config",
    "format_epoch_line",
    "label_differences",
    "launch_info",
    "log_artifact",
    "log_evaluation",
    "log_images",
    "log_results_run",
    "log_run_end",
    "main_print",
    "prepare_wandb",
    "read_offline_run",
    "records_markdown",
    "run_identity",
    "run_record",
    "start_tracking",
    "wandb_run",
    "write_history",
    "write_json",
    "write_rows",
]

logger = logging.getLogger(__name__)


def main_print(accelerator, *args, **kwargs) -> None:
    """Print on the main process of the main machine only (``accelerator.print`` prints once per
    machine: lines would repeat in a multi-node job's shared log)."""
    if accelerator.is_main_process:
        print(*args, **kwargs, flush=True)


def launch_info(accelerator) -> dict[str, Any]:
    """Launch settings as the accelerator sees them (they come from accelerate_configs/*.yaml)."""
    import torch

    dynamo = getattr(accelerator.state, "dynamo_plugin", None)
    backend = getattr(dynamo, "backend", None)
    backend = getattr(backend, "value", backend)
    device = accelerator.device
    import os

    # torchrun (accelerate's launcher) tells each process how many run on its machine.
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes) or 1)
    return {
        "num_processes": accelerator.num_processes,
        "num_machines": max(1, accelerator.num_processes // max(1, per_machine)),
        "distributed_type": str(
            accelerator.distributed_type.value
            if hasattr(accelerator.distributed_type, "value")
            else accelerator.distributed_type
        ),
        "mixed_precision": accelerator.mixed_precision,
        "dynamo_backend": str(backend or "no").lower(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": str(torch.__version__),
    }


def run_identity(
    model: str, launch: dict[str, Any], data_source: str, channels_last: bool = False
) -> dict[str, Any]:
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


def write_rows(
    path: str | os.PathLike, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None
) -> None:
    """Write result rows as ``<path>.csv`` (union of keys as columns) and ``<path>.json`` (with ``meta``), atomically."""
    path = Path(path)
    write_json(path.with_suffix(".json"), rows if meta is None else {"meta": meta, "results": rows})
    keys = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.stem}.csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path.with_suffix(".csv"))


def write_history(output_dir: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Write the per-epoch history as ``history.json`` and ``history.csv``."""
    write_rows(Path(output_dir) / "history", history)


def format_epoch_line(r: dict[str, Any], epochs: int) -> str:
    """The one summary line printed per epoch (validation figures when the epoch was validated)."""
    val = (
        f"val_loss {r['val_loss']:.4f} val_acc {r['val_accuracy']:.4f} val_bal_acc {r['val_balanced_accuracy']:.4f} | "
        if "val_loss" in r
        else ""
    )
    return (
        f"epoch {r['epoch']}/{epochs} | loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f} | {val}"
        f"lr {r['lr']:.2e} | {r['images_per_sec']:.1f} img/s | data wait {r['data_wait_pct']:.1f}% | "
        f"{r['epoch_seconds']:.1f} s | peak {r['peak_mem_mb']:.0f} MB"
        + (" | best" if r.get("is_best") else "")
    )


# ----------------------------------------------------------------------------------------------------
# Weights & Biases (through accelerate's tracker)


def wandb_logged_in() -> bool:
    """Whether wandb has credentials for its server, asked without a prompt and without the network:
    ``WANDB_API_KEY``, an identity token, a key stored by ``wandb login`` (in ``$NETRC`` or ``~/.netrc``)
    or in wandb's settings, for the server it is set to (``WANDB_BASE_URL``, e.g. a self-hosted one)."""
    import wandb

    return bool(wandb.login(prompt=False, verify=False))


def prepare_wandb(report_to: str) -> str | None:
    """Choose the W&B mode before the tracker starts (main process), so a run never hangs on a login
    prompt.

    ``WANDB_MODE`` wins when set (``online``, ``offline``, ``disabled``). Without it, credentials wandb
    finds (:func:`wandb_logged_in`) mean online; none means offline, and the user is told.

    Returns:
        The mode, or None when W&B is not the tracker.
    """
    if report_to != "wandb":
        return None
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if wandb_logged_in():
        return "online"
    os.environ["WANDB_MODE"] = "offline"
    logger.warning(
        "W&B: no credentials found (WANDB_API_KEY, `wandb login`) and WANDB_MODE is not set, so this run logs OFFLINE (upload it later with `wandb sync <run dir>/wandb/offline-run-*`)"
    )
    return "offline"


def start_tracking(
    accelerator,
    log_args,
    config: dict[str, Any],
    out: str | os.PathLike,
    job_type: str,
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
) -> None:
    """Start the run's tracker through accelerate (no-op with ``--report_to none``), in W&B's offline
    mode when wandb has no credentials (:func:`prepare_wandb`).

    Args:
        accelerator: The ``Accelerator`` (built with ``log_with=log_args.report_to``).
        log_args: ``LoggingArguments``; its run name, group and tags win over the derived ones.
        config: What the run records as its config.
        out: The run's folder (W&B writes ``wandb/`` there).
        job_type: W&B job type (``train``, ``eval``, ``profile``).
        name, group, tags: Derived defaults (e.g. from :func:`run_identity`).
    """
    if log_args.report_to == "none":
        return
    if accelerator.is_main_process:  # the tracker runs there only; its notice is printed once
        prepare_wandb(log_args.report_to)
    init = {
        "name": log_args.run_name or name,
        "group": log_args.run_group or group,
        "tags": [*(tags or []), *(log_args.tags or [])],
        "dir": str(out),
        "job_type": job_type,
    }
    accelerator.init_trackers(log_args.project, config=config, init_kwargs={"wandb": init})


def wandb_run(accelerator):
    """The live ``wandb`` run on the main process (``accelerator.get_tracker("wandb", unwrap=True)``), or
    None: other ranks, another tracker, or no tracker (``get_tracker`` would raise or return a blank)."""
    if not accelerator.is_main_process or not any(t.name == "wandb" for t in accelerator.trackers):
        return None
    return accelerator.get_tracker("wandb", unwrap=True)


def log_images(run, images: dict[str, str | os.PathLike], step: int | None = None) -> None:
    """Log PNG files as W&B images (no-op without a run)."""
    if run is None:
        return
    import wandb

    run.log({k: wandb.Image(str(v)) for k, v in images.items() if Path(v).is_file()}, step=step)


def log_evaluation(run, metrics: dict[str, Any], prefix: str, step: int | None = None) -> None:
    """Per-class table and confusion matrix as W&B tables; headline numbers into the run summary."""
    if run is None:
        return
    import wandb

    per = metrics["per_class"]
    table = wandb.Table(columns=["class", "precision", "recall", "f1", "support", "roc_auc"])
    for name, r in per.items():
        table.add_data(name, r["precision"], r["recall"], r["f1"], r["support"], r["roc_auc"])
    names = list(per)
    cm = wandb.Table(columns=["true \\ predicted", *names])
    for name, row in zip(names, metrics["confusion_matrix"]):
        cm.add_data(name, *row)
    run.log({f"{prefix}/per_class": table, f"{prefix}/confusion_matrix": cm}, step=step)
    for k, v in metrics.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            run.summary[f"{prefix}/{k}"] = v


def log_artifact(
    run,
    path: str | os.PathLike | list,
    name: str,
    type_: str,
    metadata: dict[str, Any] | None = None,
    aliases: list[str] | None = None,
) -> None:
    """Log a folder, a file or a list of files as a W&B artifact (the best model as ``type_='model'``,
    profiler traces as ``profile``)."""
    if run is None:
        return
    import wandb

    art = wandb.Artifact(name, type=type_, metadata=metadata or {})
    for p in map(Path, path if isinstance(path, list) else [path]):
        if p.is_dir():
            art.add_dir(str(p))
        else:
            art.add_file(str(p))
    run.log_artifact(art, aliases=aliases or [])


def log_run_end(
    accelerator,
    out: str | os.PathLike,
    metrics: dict[str, Any],
    summary: dict[str, Any],
    artifact: str | None,
) -> None:
    """What a training run sends to W&B at its end (main process; no-op without a W&B run): the
    training curves and test plots as images, the test evaluation's tables, and the best model as a
    ``model`` artifact named ``<artifact>-<W&B run id>`` (one per run, so runs of one set-up never
    overwrite each other's ``best``; None: not logged) with ``summary`` as its metadata."""
    from skinacc.metrics.report import EVAL_PLOTS

    run = wandb_run(accelerator)
    if run is None:
        return
    out = Path(out)
    images = {"plots/training_curves": out / "training_curves.png"}
    images |= {f"plots/test_{p.removesuffix('.png')}": out / "eval_test" / p for p in EVAL_PLOTS}
    log_images(run, images)
    if metrics:
        log_evaluation(run, metrics, "test")
    if artifact and (out / "best").is_dir():
        log_artifact(run, out / "best", f"{artifact}-{run.id}", "model", metadata=summary, aliases=["best"])


# ----------------------------------------------------------------------------------------------------
# Reading an offline W&B run back (wandb has no public reader of its .wandb log)


def _wandb_log_records(data: bytes) -> list[bytes]:
    """Split a ``.wandb`` file into records.

    The file is a 7-byte header (``:W&B``, a 2-byte magic, a 1-byte version) followed by a
    LevelDB-style log: 32 KiB blocks of chunks, each with a 4-byte checksum, a 2-byte little-endian
    length and a 1-byte type (1 full, 2 first, 3 middle, 4 last); block tails under 7 bytes are padding.
    """
    import struct

    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (missing :W&B header)")
    block, pos, out, parts = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero fill up to the block end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            out.append(parts + chunk)
            parts = b""
    return out


def read_offline_run(path: str | os.PathLike) -> dict[str, Any]:
    """What an offline W&B run recorded: name, group, tags, config, history rows, summary, artifacts, files.

    Args:
        path: A ``run-*.wandb`` file, an ``offline-run-*`` folder, or a folder holding ``wandb/``
            (the newest offline run inside is read).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    p = Path(path)
    if p.is_dir():
        found = sorted(p.rglob("run-*.wandb"), key=lambda f: f.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no run-*.wandb file under {p}")
        p = found[-1]
    run: dict[str, Any] = {
        "file": str(p),
        "config": {},
        "history": [],
        "summary": {},
        "artifacts": [],
        "files": [],
    }

    def rows(items) -> dict[str, Any]:
        """Items to a dict; media (images, tables) arrive as nested keys and become nested dicts."""
        out: dict[str, Any] = {}
        for i in items:
            path = [i.key] if i.key else list(i.nested_key)
            d = out
            for part in path[:-1]:
                d = d.setdefault(part, {})
            d[path[-1]] = json.loads(i.value_json)
        return out

    for raw in _wandb_log_records(p.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run |= {
                "id": r.run_id,
                "name": r.display_name,
                "group": r.run_group,
                "tags": list(r.tags),
                "project": r.project,
                "job_type": r.job_type,
            }
            run["config"].update(rows(r.config.update))
        elif kind == "config":
            run["config"].update(rows(rec.config.update))
        elif kind == "history":
            run["history"].append(rows(rec.history.item))
        elif kind == "summary":
            run["summary"].update(rows(rec.summary.update))
        elif kind == "artifact":
            a = rec.artifact
            run["artifacts"].append(
                {
                    "name": a.name,
                    "type": a.type,
                    "metadata": json.loads(a.metadata or "{}"),
                    "aliases": list(a.aliases),
                    "files": [e.path for e in a.manifest.contents],
                }
            )
        elif kind == "files":
            run["files"] += [f.path for f in rec.files.files]
    run["config"].pop("_wandb", None)
    return run


# ----------------------------------------------------------------------------------------------------
# Comparing runs (local output directories, offline W&B runs, or online W&B run paths)


def _steady(values: list[float]) -> float:
    """Typical per-epoch figure: the median after the first epoch (which includes warm-up)."""
    vals = [v for v in values if v == v]  # drop NaN
    if len(vals) > 1:
        vals = vals[1:]
    return float(sorted(vals)[len(vals) // 2]) if vals else float("nan")


def run_record(source: str) -> dict[str, Any]:
    """One comparable row from a run: a skinacc output dir, an offline W&B run dir, or ``entity/project/run_id``.

    Raises:
        FileNotFoundError: A local path with neither skinacc outputs nor a W&B run.
    """
    p = Path(source)
    if (p / "history.json").is_file() and (cfg := read_run_config(p)):
        hist = json.loads((p / "history.json").read_text())
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else {}
        launch = cfg.get("launch", {})
        name = cfg.get("run", {}).get("name", p.name)
        model = cfg.get("model", {}).get("model")
        batch = cfg.get("train", {}).get("batch_size")
    elif p.exists():
        off = read_offline_run(p)
        cfg = off["config"]
        hist = [
            {k.removeprefix("epoch/"): v for k, v in row.items()}
            for row in off["history"]
            if "epoch/images_per_sec" in row
        ]
        summary = {k.replace("/", "_"): v for k, v in off["summary"].items()}
        launch, name = cfg.get("launch", {}), off.get("name") or p.name
        model, batch = cfg.get("model", {}).get("model"), cfg.get("train", {}).get("batch_size")
    elif source.count("/") == 2:
        import wandb

        r = wandb.Api().run(source)
        cfg = dict(r.config)
        hist = [
            {k.removeprefix("epoch/"): v for k, v in row.items()}
            for row in r.scan_history()
            if "epoch/images_per_sec" in row
        ]
        summary = {k.replace("/", "_"): v for k, v in dict(r.summary).items()}
        launch, name = cfg.get("launch", {}), r.name
        model, batch = cfg.get("model", {}).get("model"), cfg.get("train", {}).get("batch_size")
    else:
        raise FileNotFoundError(
            f"{source!r}: not a skinacc output dir, an offline W&B run dir, or an entity/project/run_id path"
        )
    prec = launch.get("mixed_precision", "no")
    return {
        "run": p.name if p.exists() else source,  # made unique by compare_runs (paths, not names, differ)
        "name": name,
        "source": source,
        "config": flat_config(cfg),
        "model": model,
        "processes": int(launch.get("num_processes", 1)),
        "precision": "fp32" if prec in ("no", None) else prec,
        "compile": launch.get("dynamo_backend", "no") not in ("no", "none", None),
        "batch_per_process": batch,
        "epochs": len(hist),
        "images_per_sec": _steady([float(r.get("images_per_sec", float("nan"))) for r in hist]),
        "peak_mem_mb": max((float(r.get("peak_mem_mb", 0)) for r in hist), default=float("nan")),
        "data_wait_pct": _steady([float(r.get("data_wait_pct", float("nan"))) for r in hist]),
        "best_val_loss": min((float(r["val_loss"]) for r in hist if "val_loss" in r), default=float("nan")),
        "best_val_accuracy": max(
            (float(r["val_accuracy"]) for r in hist if "val_accuracy" in r), default=float("nan")
        ),
        "test_accuracy": float(summary.get("test_accuracy", float("nan"))),
        "test_balanced_accuracy": float(summary.get("test_balanced_accuracy", float("nan"))),
    }


#: Run options that do not make two runs different set-ups (where and under which name they ran,
#: what was logged), or that compare_records compares explicitly (processes, precision, compile).
NOT_SETUP = {
    "output_dir",
    "run_name",
    "run_group",
    "tags",
    "project",
    "report_to",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "cache_dir",
    "num_processes",
    "distributed_type",
    "mixed_precision",
    "dynamo_backend",
    "name",
    "group",
    "global_batch_size",
    "data_workers",
    "steps_per_epoch",
    "num_workers",
    "device_name",
    "torch",
}


def flat_config(cfg: dict[str, Any]) -> dict[str, str]:
    """A run config ``{section: {option: value}}`` as ``{option: value as text}`` (for comparing runs)."""
    out: dict[str, str] = {}
    for values in cfg.values():
        if isinstance(values, dict):
            for k, v in values.items():
                if not isinstance(v, dict):
                    out.setdefault(k, json.dumps(v, default=str, sort_keys=True))
    return out


def label_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each run row a unique ``run`` label (its path where folder names repeat), a ``differs``
    column naming the options in which it differs from the others, and a ``setup`` key shared by runs
    that differ only in processes, precision, compile and bookkeeping (see :data:`NOT_SETUP`)."""
    names = [r["run"] for r in rows]
    for r in rows:
        if names.count(r["run"]) > 1:
            r["run"] = r["source"]
    configs = [r.get("config", {}) for r in rows]
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if len({c.get(k) for c in configs}) > 1]
    for r, c in zip(rows, configs):
        r["differs"] = " ".join(f"{k}={c.get(k, '-')}" for k in varying if k not in NOT_SETUP) or "-"
        r["setup"] = json.dumps({k: c.get(k) for k in keys if k not in NOT_SETUP}, sort_keys=True)
    return rows


def compare_records(
    rows: list[dict[str, Any]], variant: tuple[str, ...] = ("model", "precision", "compile")
) -> list[dict[str, Any]]:
    """Add speed-up and scaling efficiency vs the fewest-process rows of the same ``variant``, and
    throughput/memory relative to the fp32 row of the same variant and process count.

    Speed-up and efficiency are computed only within a group of equal ``variant`` that was measured at
    two or more process counts (NaN otherwise); the base is the mean of the group's rows at its smallest
    process count, so repeats of one set-up are never mistaken for a scaling point. Rows without
    ``images_per_sec`` (failed measurements) are left as they are. Used by ``recipes/compare_runs.py``
    (runs, grouped by ``setup``; see :func:`label_differences`) and ``recipes/benchmark_throughput.py``
    (benchmark variants, with mode, layout and batch size in ``variant``).
    """

    def nan_div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    measured = [r for r in rows if "images_per_sec" in r]
    for r in measured:
        same = [q for q in measured if all(q.get(k) == r.get(k) for k in variant)]
        counts = sorted({q["processes"] for q in same})
        if len(counts) < 2:
            r["speedup"] = r["scaling_efficiency"] = float("nan")
        else:
            base = [q["images_per_sec"] for q in same if q["processes"] == counts[0]]
            r["speedup"] = nan_div(r["images_per_sec"], sum(base) / len(base))
            r["scaling_efficiency"] = r["speedup"] * counts[0] / r["processes"]
        fp32 = [
            q
            for q in measured
            if q["precision"] == "fp32"
            and q["processes"] == r["processes"]
            and all(q.get(k) == r.get(k) for k in variant if k != "precision")
        ]
        r["throughput_vs_fp32"] = (
            nan_div(r["images_per_sec"], fp32[0]["images_per_sec"]) if fp32 else float("nan")
        )
        r["memory_vs_fp32"] = nan_div(r["peak_mem_mb"], fp32[0]["peak_mem_mb"]) if fp32 else float("nan")
    return rows


def records_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows``."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def log_results_run(
    report_to: str,
    project: str,
    job_type: str,
    rows: list[dict[str, Any]],
    images: list[str | os.PathLike],
    config: dict[str, Any],
    out_dir: str | os.PathLike,
) -> None:
    """Log a benchmark's rows (as a table) and plots (as images) as one W&B run of ``job_type``.

    Benchmarks run outside a training loop (and the scaling driver outside any accelerate launch), so
    this starts a plain ``wandb`` run; the mode follows :func:`prepare_wandb`.
    """
    if report_to != "wandb":
        return
    import wandb

    prepare_wandb(report_to)
    run = wandb.init(
        project=project, job_type=job_type, config=config, dir=str(out_dir), reinit="finish_previous"
    )
    cols = list(dict.fromkeys(k for r in rows for k in r))
    table = wandb.Table(
        columns=cols,
        data=[
            [json.dumps(r.get(c)) if isinstance(r.get(c), list | dict) else r.get(c) for c in cols]
            for r in rows
        ],
    )
    run.log(
        {
            f"{job_type}/results": table,
            **{f"{job_type}/{Path(p).stem}": wandb.Image(str(p)) for p in images if Path(p).is_file()},
        }
    )
    run.finish()
