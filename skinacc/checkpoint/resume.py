"""Resuming: a checkpoint is checked against the run (model, classes, options that shape the state,
RNG files, no pickles) before anything is loaded, and every part must load or the resume stops."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skinacc.checkpoint.store import STATE_FILE, CheckpointError, read_manifest

__all__ = ["check_identity", "config_changes", "load_checkpoint"]


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Options whose value differs between a checkpoint's run config and this run's, that a resume
    cannot honour: all but those marked ``resume=True`` (:func:`skinacc.config.may_change_on_resume`),
    and ``epochs`` unless the schedule is a cosine over them. Both are ``{section: {option: value}}``."""
    from skinacc.config import may_change_on_resume

    cosine = now.get("train", {}).get("scheduler") == "cosine"
    out = []
    for section, values in now.items():
        old = saved.get(section)
        if not isinstance(values, dict) or not isinstance(old, dict):
            continue
        for k, v in values.items():
            # More epochs extend an epoch-level schedule, but would reshape a cosine curve under way.
            if may_change_on_resume(k) or (k == "epochs" and not cosine) or k not in old:
                continue
            if json.dumps(old[k], default=str) != json.dumps(v, default=str):
                out.append(f"--{k}={v!r} (the checkpoint's run has {old[k]!r})")
    return out


def load_checkpoint(
    accelerator,
    path: str | os.PathLike,
    expect: dict[str, Any],
    states: dict[str, Any] | None = None,
    state: Any = None,
) -> dict[str, Any]:
    """Validate a checkpoint against the current run, then restore it.

    Args:
        accelerator: The ``Accelerator`` with the same models and optimizers prepared as when saved.
        path: The checkpoint folder.
        expect: Manifest entries that must match (e.g. ``model``, ``class_names``).
        states: skinacc's own state objects, by the names they were saved under (every one must load).
        state: The run's ``engine.TrainState`` (one of ``states``), if any: a checkpoint saved mid-epoch
            must be resumed with the world size it was saved with, since the rest of the epoch's batches
            are sharded by it.

    Returns:
        The manifest.

    Raises:
        CheckpointError: Different model or classes, pickled objects, a part that is missing or does
            not load (weights, optimizer, RNG states, skinacc's state), or a mid-epoch checkpoint
            resumed with another number of processes.
    """
    path = Path(path)
    manifest = read_manifest(path)
    check_identity(path, manifest, expect)
    pickled = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
    if pickled:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: it holds pickled objects ({', '.join(pickled)}), which can run "
            "arbitrary code when loaded; skinacc stores its state as JSON and safetensors and does not load them "
            "(a checkpoint from skinacc before 0.2, or one that was tampered with)"
        )
    _check_rng_file(path, accelerator.process_index)
    try:
        accelerator.load_state(str(path))
    except Exception as e:  # corrupt or truncated files: say which checkpoint, keep the cause
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: its files could not be loaded ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    _load_states(path, states or {})
    if state is not None and state.batch_in_epoch and state.saved_world_size != accelerator.num_processes:
        raise CheckpointError(
            f"--resume_from_checkpoint={str(path)!r}: saved mid-epoch with {state.saved_world_size} processes; "
            f"resume with the same number (now {accelerator.num_processes})"
        )
    return manifest


def check_identity(path: Path, manifest: dict[str, Any], expect: dict[str, Any]) -> None:
    problems = [
        f"{k}: checkpoint has {manifest.get(k)!r}, this run has {v!r}"
        for k, v in expect.items()
        if manifest.get(k) != v
    ]
    if problems:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}, it belongs to another run:\n  - " + "\n  - ".join(problems)
        )


def _check_rng_file(path: Path, process_index: int) -> None:
    """accelerate skips RNG states it cannot load with only a log line; a resume would then silently
    continue with other random numbers. Load this process's file first (safely) and fail clearly."""
    from accelerate.utils.other import load

    f = path / f"random_states_{process_index}.pkl"
    if not f.is_file():
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: {f.name} (the RNG states of process {process_index}) is missing"
        )
    try:
        states = load(f, weights_only=True)  # plain tensors and arrays only; never runs code
        if not isinstance(states, dict) or "torch_manual_seed" not in states:
            raise ValueError("no torch RNG state in it")
    except Exception as e:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: {f.name} does not load as plain RNG states ({type(e).__name__}: {str(e)[:200]})"
        ) from e


def _load_states(path: Path, states: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    if not states:
        return
    try:
        plain = json.loads((path / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: {STATE_FILE} is missing or unreadable ({e})"
        ) from e
    for name, obj in states.items():
        tensor_file = path / f"{name}.safetensors"
        try:
            if name in plain:
                obj.load_state_dict(plain[name])
            elif tensor_file.is_file():
                obj.load_state_dict(load_file(str(tensor_file)))
            else:
                raise KeyError(f"no {name!r} in {STATE_FILE} and no {tensor_file.name}")
        except Exception as e:
            raise CheckpointError(
                f"cannot resume from {str(path)!r}: the {name!r} state does not load ({type(e).__name__}: {str(e)[:200]}); "
                "the checkpoint is damaged or was written with other options"
            ) from e
