"""What a run tells the tracker and the console: launch facts, its name and tags, the epoch line, and
W&B through accelerate's tracker (live runs), with offline mode when wandb has no credentials.

Everything here that logs or writes is meant for the main process only; the callers gate it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = [
    "format_epoch_line",
    "launch_info",
    "log_artifact",
    "log_clinical",
    "log_evaluation",
    "log_images",
    "log_results_run",
    "log_run_end",
    "main_print",
    "prepare_wandb",
    "run_identity",
    "start_tracking",
    "wandb_logged_in",
    "wandb_run",
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

    import skinacc

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
        "skinacc": skinacc.__version__,  # which code made the run, beside which torch ran it
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


def wandb_logged_in() -> bool:
    """Whether wandb has credentials for its server, asked without a prompt and without the network:
    ``WANDB_API_KEY``, an identity token, a key stored by ``wandb login`` (in ``$NETRC`` or ``~/.netrc``)
    or in wandb's settings, for the server it is set to (``WANDB_BASE_URL``, e.g. a self-hosted one)."""
    import wandb

    return bool(wandb.login(prompt=False, verify=False))


def prepare_wandb(report_to: str) -> str | None:
    """Choose the W&B mode before the tracker starts (main process), so a run never hangs on a login
    prompt; the caller passes it to ``wandb.init(mode=...)`` (wandb has set up its settings by now, so
    setting ``WANDB_MODE`` here would be ignored).

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
    # The tracker runs on the main process only; its notice is printed once. The mode goes to wandb.init
    # itself: asking wandb for credentials set up its settings before WANDB_MODE could say offline.
    mode = prepare_wandb(log_args.report_to) if accelerator.is_main_process else None
    init = {
        "name": log_args.run_name or name,
        "group": log_args.run_group or group,
        "tags": [*(tags or []), *(log_args.tags or [])],
        "dir": str(out),
        "job_type": job_type,
    } | ({"mode": mode} if mode else {})
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


def log_clinical(run, report: dict[str, Any], prefix: str, step: int | None = None) -> None:
    """The clinical evaluation as W&B tables (CIs as columns): headline metrics, per-class recall, label
    groups, operating points and subgroups (:func:`skinacc.clinical.clinical_evaluation`'s report)."""
    if run is None:
        return
    import wandb

    cols = ["metric", "value", "ci_low", "ci_high"]
    rows = [[k, v["value"], v["ci_low"], v["ci_high"]] for k, v in report["headline"].items()]
    for name, g in report["label_groups"].items():
        rows += [
            [f"{name}/{k}", v["value"], v["ci_low"], v["ci_high"]]
            for k, v in g.items()
            if isinstance(v, dict)
        ]
    for op in report["operating_points"]:
        rows += [
            [f"{op['rule']}/{k}", op[k]["value"], op[k]["ci_low"], op[k]["ci_high"]]
            for k in ("sensitivity", "specificity", "ppv", "npv", "referred")
        ]
    tables = {f"{prefix}/clinical": wandb.Table(columns=cols, data=rows)}
    recall = [
        [k, v["support"], v["value"], v["ci_low"], v["ci_high"]]
        for k, v in report["per_class_recall"].items()
    ]
    tables[f"{prefix}/recall_ci"] = wandb.Table(columns=["class", "support", *cols[1:]], data=recall)
    sub = [
        [r["column"], r["subgroup"], r["images"], k, v["value"], v["ci_low"], v["ci_high"], r["warning"]]
        for rs in report.get("subgroups", {}).values()
        for r in rs
        for k, v in r.items()
        if isinstance(v, dict)
    ]
    if sub:
        tables[f"{prefix}/subgroups"] = wandb.Table(
            columns=["column", "subgroup", "images", *cols, "warning"], data=sub
        )
    run.log(tables, step=step)


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
    summary: dict[str, Any],
    artifact: str | None,
) -> None:
    """What a training run sends to W&B at its end (main process; no-op without a W&B run): the
    training curves as an image and the best model as a ``model`` artifact named
    ``<artifact>-<W&B run id>`` (one per run, so runs of one set-up never overwrite each other's
    ``best``; None: not logged) with ``summary`` as its metadata. The test's figures and tables were
    logged by its report (:func:`skinacc.evaluation.report`)."""
    run = wandb_run(accelerator)
    if run is None:
        return
    out = Path(out)
    log_images(run, {"plots/training_curves": out / "training_curves.png"})
    if artifact and (out / "best").is_dir():
        log_artifact(run, out / "best", f"{artifact}-{run.id}", "model", metadata=summary, aliases=["best"])


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

    run = wandb.init(
        project=project,
        job_type=job_type,
        config=config,
        dir=str(out_dir),
        reinit="finish_previous",
        mode=prepare_wandb(report_to),
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
