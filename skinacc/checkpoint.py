"""Resumable checkpoints: atomic ``save_state``, pruning, and validated resumption.

A checkpoint is accelerate's ``save_state`` folder (model, optimizer, scaler, RNG states of every
process, sampler, and every object registered with ``register_for_checkpointing``) plus a manifest,
``skinacc_checkpoint.json``. It is written under a temporary name and renamed into place only once
complete, so a crash during a save leaves the previous checkpoint intact and readable; ``latest``
only ever picks folders that have a manifest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "CheckpointError",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_manifest",
    "resolve_resume_path",
    "save_checkpoint",
]

MANIFEST = "skinacc_checkpoint.json"
_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or belongs to another model or class set."""


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``ckpt_dir``, oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name)) and (p / MANIFEST).is_file()
    ]
    return [p for _, p in sorted(found)]


def find_latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint's manifest.

    Raises:
        CheckpointError: No such folder, or no (readable) manifest in it.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint={str(path)!r}: no such checkpoint folder")
    mf = path / MANIFEST
    if not mf.is_file():
        raise CheckpointError(
            f"--resume_from_checkpoint={str(path)!r}: no {MANIFEST}; not a skinacc checkpoint, or a save that never completed"
        )
    try:
        return json.loads(mf.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{mf}: unreadable manifest ({e})") from e


def resolve_resume_path(arg: str, ckpt_dir: str | os.PathLike) -> Path:
    """Turn ``latest`` or a folder into a checkpoint path.

    Raises:
        CheckpointError: ``latest`` with no checkpoint, or a folder that is not a checkpoint.
    """
    if arg == "latest":
        found = find_latest_checkpoint(ckpt_dir)
        if found is None:
            raise CheckpointError(
                f"--resume_from_checkpoint=latest: no complete checkpoint in {str(ckpt_dir)!r} "
                "(give a checkpoint folder, or start without --resume_from_checkpoint)"
            )
        return found
    path = Path(arg).expanduser()
    read_manifest(path)
    return path


def save_checkpoint(
    accelerator, ckpt_dir: str | os.PathLike, global_step: int, manifest: dict[str, Any], keep_last: int
) -> Path:
    """Save a resumable checkpoint atomically and prune old ones. Call on every process.

    Args:
        accelerator: The ``Accelerator`` (models, optimizers and registered objects are saved).
        ckpt_dir: Folder holding ``step_<N>`` checkpoints (same path on every process).
        global_step: Optimizer steps so far; names the checkpoint.
        manifest: Facts checked at resume (model, classes, epoch, position).
        keep_last: Complete checkpoints to keep.

    Returns:
        The final checkpoint folder.
    """
    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step_{global_step:08d}"
    tmp = ckpt_dir / f".tmp-step_{global_step:08d}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        old = ckpt_dir / f".old-{final.name}"
        if final.exists():  # re-saving the same step (epoch end right after a step save): swap, then delete
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        for old in list_checkpoints(ckpt_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | os.PathLike, expect: dict[str, Any]) -> dict[str, Any]:
    """Validate a checkpoint against the current run, then restore it with ``load_state``.

    Args:
        accelerator: The ``Accelerator`` with the same objects prepared/registered as when saved.
        path: The checkpoint folder.
        expect: Manifest entries that must match (e.g. ``model``, ``class_names``).

    Returns:
        The manifest.

    Raises:
        CheckpointError: Different model or classes, or files that cannot be loaded.
    """
    path = Path(path)
    manifest = read_manifest(path)
    problems = [
        f"{k}: checkpoint has {manifest.get(k)!r}, this run has {v!r}"
        for k, v in expect.items()
        if manifest.get(k) != v
    ]
    if problems:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}, it belongs to another run:\n  - " + "\n  - ".join(problems)
        )
    try:
        accelerator.load_state(str(path))
    except Exception as e:  # corrupt or truncated files: say which checkpoint, keep the cause
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: its files could not be loaded ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return manifest
