"""The checkpoint folder on disk: its files, atomic saves and pruning, listing, and tidying what a killed
save left behind (see :mod:`skinacc.checkpoint` for the format)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from skinacc.rundir import disk_space_guard, folder_bytes, human_bytes

__all__ = [
    "MANIFEST",
    "STATE_FILE",
    "CheckpointError",
    "clear_interrupted_saves",
    "estimate_checkpoint_bytes",
    "find_latest_checkpoint",
    "list_checkpoints",
    "read_manifest",
    "resolve_resume_path",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

MANIFEST = "skinacc_checkpoint.json"
STATE_FILE = "skinacc_state.json"
_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or belongs to another model or class set."""


def list_checkpoints(ckpt_dir: str | os.PathLike, run_id: str | None = None) -> list[Path]:
    """Complete checkpoints in ``ckpt_dir``, oldest first; only run ``run_id``'s when given."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name)) and (p / MANIFEST).is_file()
    ]
    out = [p for _, p in sorted(found)]
    if run_id is not None:
        out = [p for p in out if _manifest_run_id(p) == run_id]
    return out


def _manifest_run_id(path: Path) -> str | None:
    try:
        return json.loads((path / MANIFEST).read_text()).get("run_id")
    except (OSError, json.JSONDecodeError):
        return None


def clear_interrupted_saves(ckpt_dir: str | os.PathLike) -> list[str]:
    """Tidy what a save that was killed left in ``ckpt_dir`` (call on the main process, with the run's
    folder locked, before the first save).

    ``.tmp-step_N`` (a save that never completed) is removed. ``.old-step_N`` is the previous copy of a
    checkpoint being saved again at the same step: removed when ``step_N`` is in place, else renamed
    back to ``step_N`` (the kill came between the two renames, and it is the only copy).

    Returns:
        What was done, one line per folder (also logged).
    """
    d = Path(ckpt_dir)
    done: list[str] = []
    if not d.is_dir():
        return done
    for p in sorted(d.glob(".tmp-step_*")):
        size = folder_bytes(p)
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name} ({human_bytes(size)}), a save that did not complete")
    for p in sorted(d.glob(".old-step_*")):
        final = d / p.name.removeprefix(".old-")
        if (final / MANIFEST).is_file():
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}, the previous copy of {final.name}")
        elif (p / MANIFEST).is_file():
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(p, final)
            done.append(f"restored {final.name} from {p.name} (a save at that step was interrupted)")
    for line in done:
        logger.warning("checkpoints: %s", line)
    return done


def estimate_checkpoint_bytes(model, optimizer_slots: int = 2, ema=None) -> int:
    """About how many bytes one checkpoint of ``model`` takes: its weights, ``optimizer_slots`` state
    tensors per trainable parameter (Adam and AdamW keep two, SGD with momentum one) and the EMA copy.
    """
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    extra = sum(t.numel() * t.element_size() for t in ema.state_dict().values()) if ema is not None else 0
    return weights + optimizer_slots * trainable + extra


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


def _split_state(states: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Plain-data state dicts (to JSON) and tensor state dicts (to safetensors), by name."""
    import torch

    plain, tensors = {}, {}
    for name, obj in states.items():
        sd = obj.state_dict()
        if sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
            tensors[name] = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
        else:
            plain[name] = sd
    return plain, tensors


def save_checkpoint(
    accelerator,
    ckpt_dir: str | os.PathLike,
    global_step: int,
    manifest: dict[str, Any],
    keep_last: int,
    states: dict[str, Any] | None = None,
) -> Path:
    """Save a resumable checkpoint atomically and prune old ones. Call on every process.

    Args:
        accelerator: The ``Accelerator`` (prepared models and optimizers, scaler and RNG states are saved).
        ckpt_dir: Folder holding ``step_<N>`` checkpoints (same path on every process).
        global_step: Optimizer steps so far; names the checkpoint.
        manifest: Facts checked at resume (model, classes, run id, config, epoch, position).
        keep_last: Complete checkpoints of this run (``manifest["run_id"]``) to keep.
        states: skinacc's own state, ``{name: object with state_dict()}``; identical on every process
            (reduce running sums first). Tensor state dicts go to ``<name>.safetensors``, the others to
            ``skinacc_state.json``.

    Returns:
        The final checkpoint folder.
    """
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step_{global_step:08d}"
    tmp = ckpt_dir / f".tmp-step_{global_step:08d}"
    main = accelerator.is_main_process
    # What the previous checkpoint took is what this one needs, near enough (for a full-disk message).
    previous = list_checkpoints(ckpt_dir, manifest.get("run_id")) if main else []
    needed = folder_bytes(previous[-1]) if previous else None
    guard = disk_space_guard(
        ckpt_dir, f"saving checkpoint {final.name}", needed, partial=tmp if main else None
    )
    with guard:
        if main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        plain, tensors = _split_state(states or {})
        accelerator.wait_for_everyone()
        if main:
            for name, sd in tensors.items():
                save_file(sd, str(tmp / f"{name}.safetensors"))
            # allow_nan: inf/NaN (an early stopper's initial best) are valid states; json reads them back.
            (tmp / STATE_FILE).write_text(json.dumps(plain, indent=1, allow_nan=True))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if main:
        old = ckpt_dir / f".old-{final.name}"
        if final.exists():  # re-saving the same step (epoch end right after a step save): swap, then delete
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        for old in list_checkpoints(ckpt_dir, manifest.get("run_id"))[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
