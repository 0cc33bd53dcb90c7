"""Stop a run cleanly when asked to, and never outlive the launcher.

``accelerate launch`` does not forward signals to the training processes, and its multi-process
launcher starts them in their own sessions: stopping the launcher (Ctrl+C, ``kill``, a scheduler's
SIGTERM, ``docker stop``) would leave the ranks training and writing checkpoints. :class:`StopRequest`
fixes both ends:

- every training process asks the kernel for a SIGTERM when its parent (the launcher) dies
  (``prctl(PR_SET_PDEATHSIG)``, Linux), so a killed launcher still stops its ranks;
- SIGTERM (and SIGINT) only set a flag; the training loop checks it after every optimizer step (with
  several processes the ranks agree on it every 10th step with one tiny all-reduce), and the run saves
  a checkpoint at that step boundary and exits with status 143 (128 + SIGTERM). ``--resume_from_checkpoint latest`` continues exactly there.

A second SIGINT (Ctrl+C twice) interrupts at once, as Python does by default.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import torch

__all__ = ["EXIT_STOPPED", "StopRequest", "TrainingStopped"]

logger = logging.getLogger(__name__)

EXIT_STOPPED = 128 + signal.SIGTERM


class TrainingStopped(Exception):
    """Raised at a step boundary after a stop was requested (the checkpoint is already saved)."""


class StopRequest:
    """Turns SIGTERM/SIGINT (and the launcher's death) into a stop at the next optimizer step.

    Args:
        accelerator: Used to agree on the stop across processes.
        watch_parent: Ask for SIGTERM when the parent process dies (Linux only; elsewhere a no-op).
        every: With several processes, agree on a stop every this many optimizer steps.
    """

    def __init__(self, accelerator, watch_parent: bool = True, every: int = 10):
        self.accelerator = accelerator
        self.every = every
        self.signal: str | None = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        if watch_parent:
            _die_with_parent()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal == "SIGINT":
            raise KeyboardInterrupt  # Ctrl+C twice: stop now
        self.signal = signal.Signals(signum).name
        print(
            f"skinacc: {self.signal} received, saving a checkpoint at the next step and stopping",
            file=sys.stderr,
            flush=True,
        )

    def requested(self, step: int) -> bool:
        """Whether any process was asked to stop, the same answer on every process. Call after every
        optimizer step with the step count: with several processes the ranks agree every
        ``every``-th step only (an all-reduce, and on a GPU a host sync, per step would cost speed)."""
        if self.accelerator.num_processes == 1:
            return self.signal is not None
        if step % self.every:
            return False
        t = torch.tensor([1.0 if self.signal else 0.0], device=self.accelerator.device)
        return float(self.accelerator.reduce(t, reduction="sum").item()) > 0

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError) as e:  # no prctl: the signal handlers still work
        logger.warning("cannot ask to be stopped with the launcher (%s)", e)
        return
    if os.getppid() == 1:  # the parent died before prctl: behave as if the signal came
        os.kill(os.getpid(), signal.SIGTERM)
