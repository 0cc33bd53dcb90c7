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

import logging
import os
from pathlib import Path
from typing import Any

from skinacc.checkpoint.resume import check_identity, config_changes, load_checkpoint
from skinacc.checkpoint.store import (
    MANIFEST,
    STATE_FILE,
    CheckpointError,
    clear_interrupted_saves,
    estimate_checkpoint_bytes,
    find_latest_checkpoint,
    list_checkpoints,
    read_manifest,
    resolve_resume_path,
    save_checkpoint,
)
from skinacc.rundir import free_bytes, human_bytes

__all__ = [
    "MANIFEST",
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


class Checkpointer:
    """A run's checkpoints: what identifies the run, what state is saved, and how it is resumed.

    Args:
        accelerator: The ``Accelerator``.
        ckpt_dir: The run's ``checkpoints/`` folder.
        identity: Manifest entries a resume must match (``model``, ``class_names``).
        states: skinacc's state objects by name (must include ``train_state``, an ``engine.TrainState``).
        keep_last: Checkpoints of this run to keep.
        config: The run's resolved options, ``{section: {option: value}}``; a resume refuses changes to
            any that shape the state (see :func:`config_changes`).
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
        check_identity(path, manifest, self.identity)  # another model or class set: say that first
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
