"""Resumable checkpoints: atomic saves, pruning, and validated, safe resumption.

A checkpoint folder holds what accelerate's ``save_state`` writes (model weights as safetensors,
optimizer, grad scaler and every process's RNG states, all loaded back with ``weights_only=True``), plus
skinacc's own state as plain data: ``skinacc_state.json`` (scheduler, early stopping, progress and
history) and ``<name>.safetensors`` for tensor state such as EMA weights, and a manifest,
``skinacc_checkpoint.json``. Nothing skinacc resumes is unpickled: accelerate's
``register_for_checkpointing`` stores objects as pickles it loads with ``weights_only=False``, so a
crafted checkpoint could run code on ``--resume_from_checkpoint``; skinacc does not use it, and refuses
checkpoints that carry such files.

A checkpoint is written under a temporary name and renamed into place only once complete, so a crash
during a save leaves the previous checkpoint intact and readable; ``latest`` only ever picks folders
that have a manifest. A save that fails removes its temporary folder (on a full disk it says so in
one line: where, how much the save needed, how much is free), and what a killed save left behind is
cleared when the next run starts (:func:`clear_interrupted_saves`). Every part of a checkpoint must
load, or resuming stops with an error naming it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from skinacc.rundir import disk_space_guard, folder_bytes, free_bytes, human_bytes

__all__ = [
    "MANIFEST",
    "RESUME_MAY_CHANGE",
    "STATE_FILE",
    "CheckpointError",
    "Checkpointer",
    "clear_interrupted_saves",
    "config_changes",
    "estimate_checkpoint_bytes",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_manifest",
    "resolve_resume_path",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

MANIFEST = "skinacc_checkpoint.json"
STATE_FILE = "skinacc_state.json"
_NAME = re.compile(r"^step_(\d+)$")

#: Options that may differ when a run is resumed (besides every logging option): where things go, what
#: is evaluated at the end, and how data are read (and ``epochs``, unless the schedule is a cosine over them). Everything
#: else (optimizer, schedule, data, augmentation, model) shapes the state being resumed and must match.
RESUME_MAY_CHANGE = {
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "output_dir",
    "eval_test",
    "eval_batch_size",
    "tta",
    "calibrate",
    "keep_last_checkpoints",
    "checkpoint_every_n_steps",
    "log_every_n_steps",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "cache_dir",
    "verify_images",
}


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


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Options whose value differs between a checkpoint's run config and this run's, that a resume
    cannot honour (see :data:`RESUME_MAY_CHANGE`). Both are ``{section: {option: value}}``."""
    out = []
    # More epochs extend an epoch-level schedule, but would reshape a cosine curve already under way.
    may_change = RESUME_MAY_CHANGE | (
        {"epochs"} if now.get("train", {}).get("scheduler") != "cosine" else set()
    )
    for section, values in now.items():
        if section == "logging":  # what is tracked and published never shapes the resumed state
            continue
        old = saved.get(section)
        if not isinstance(values, dict) or not isinstance(old, dict):
            continue
        for k, v in values.items():
            if k in may_change or k not in old:
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
    _check_identity(path, manifest, expect)
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


def _check_identity(path: Path, manifest: dict[str, Any], expect: dict[str, Any]) -> None:
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


class Checkpointer:
    """A run's checkpoints: what identifies the run, what state is saved, and how it is resumed.

    Args:
        accelerator: The ``Accelerator``.
        ckpt_dir: The run's ``checkpoints/`` folder.
        identity: Manifest entries a resume must match (``model``, ``class_names``).
        states: skinacc's state objects by name (must include ``train_state``, an ``engine.TrainState``).
        keep_last: Checkpoints of this run to keep.
        config: The run's resolved options, ``{section: {option: value}}``; a resume refuses changes to
            any that shape the state (see :data:`RESUME_MAY_CHANGE`).
    """

    def __init__(
        self,
        accelerator,
        ckpt_dir: str | os.PathLike,
        identity: dict[str, Any],
        states: dict[str, Any],
        keep_last: int,
        config: dict[str, Any],
    ):
        import uuid

        from accelerate.utils import broadcast_object_list

        self.accelerator = accelerator
        self.ckpt_dir = Path(ckpt_dir)
        self.identity = identity
        self.states = states
        self.keep_last = keep_last
        self.config = config
        # One id for the whole run, resumes included: pruning only ever touches this run's checkpoints.
        self.run_id = broadcast_object_list([uuid.uuid4().hex[:12]])[0]  # rank 0's, on every rank
        self.last: Path | None = None
        if accelerator.is_main_process:
            clear_interrupted_saves(self.ckpt_dir)  # a killed save's partial folder must not fill the disk
        accelerator.wait_for_everyone()

    def warn_if_disk_is_short(self, model, optimizer=None, ema=None) -> int:
        """Warn (main process) when the output folder's file system has less free space than one
        checkpoint takes (:func:`estimate_checkpoint_bytes`); return that estimate."""
        unwrapped = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        opt = getattr(optimizer, "optimizer", optimizer)
        slots = 1 if type(opt).__name__ == "SGD" else 2
        need = estimate_checkpoint_bytes(unwrapped, slots, ema)
        if self.accelerator.is_main_process:
            free = free_bytes(self.ckpt_dir)
            if free < need:
                logger.warning(
                    "only %s free on the file system of %s, and one checkpoint takes about %s: the first "
                    "save will fail (free some space, or give another --output_dir)",
                    human_bytes(free),
                    self.ckpt_dir,
                    human_bytes(need),
                )
        return need

    def save(self) -> Path:
        """Save every state at the current step (call on every process)."""
        state = self.states["train_state"]
        state.snapshot(self.accelerator)
        manifest = self.identity | {
            "run_id": self.run_id,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "global_step": state.global_step,
            "world_size": self.accelerator.num_processes,
            "config": self.config,
        }
        self.last = save_checkpoint(
            self.accelerator, self.ckpt_dir, state.global_step, manifest, self.keep_last, self.states
        )
        return self.last

    def resume(self, arg: str) -> Path:
        """Restore ``latest`` or a checkpoint folder into the run's objects.

        Raises:
            CheckpointError: See :func:`load_checkpoint`; also when options that shape the resumed state
                differ from the checkpoint's run.
        """
        path = resolve_resume_path(arg, self.ckpt_dir)
        manifest = read_manifest(path)
        _check_identity(path, manifest, self.identity)  # another model or class set: say that first
        changed = config_changes(manifest.get("config", {}), self.config)
        if changed:
            raise CheckpointError(
                f"--resume_from_checkpoint={str(path)!r}: a resumed run continues with the options it was "
                "trained with, but these differ:\n  - "
                + "\n  - ".join(changed)
                + "\nDrop them to resume, or start a new run (--overwrite_output_dir or another --output_dir)."
            )
        load_checkpoint(self.accelerator, path, self.identity, self.states, self.states["train_state"])
        self.run_id = manifest.get("run_id", self.run_id)
        self.last = path
        return path
