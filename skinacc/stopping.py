"""Stop a run cleanly when asked to: save what it must inside the launcher's grace, then exit 143.

Who sends the signal, and how long the run has (accelerate 1.16, torch 2.14):

- ``accelerate launch`` with one process forwards SIGTERM and SIGINT to the whole process tree (the
  training process *and* its data-loading workers) and SIGKILLs whatever is still alive 5 s later.
- With several processes, torch's elastic agent (what accelerate runs) sends SIGTERM to each rank's
  process group (ranks and their workers) and SIGKILLs them 30 s later.
- SLURM (``--signal``, ``scancel``), ``docker stop`` and Kubernetes send SIGTERM to the launcher or to
  every process of the job, and SIGKILL after their own grace period.

:class:`StopRequest` turns SIGTERM/SIGINT into a stop at the next safe point:

- the handler only sets a flag; the training loop checks it after every optimizer step (with several
  processes the ranks agree on it every 10th step, with one tiny all-reduce), evaluation loops after
  every batch (every 10th with several processes), and the run checks it between its end-of-run phases;
- at a step the run saves a checkpoint and exits with status 143 (128 + SIGTERM); a stop during
  validation saves the epoch's training (validation runs again on resume); a stop during the final
  calibration, test or publishing exits without a save, since the last epoch's checkpoint holds it all
  and a resume runs the end of the run again. ``--resume_from_checkpoint latest`` continues exactly.
- every training process asks the kernel for a SIGTERM when its launcher dies (``prctl(PR_SET_PDEATHSIG)``,
  Linux), so a killed launcher (``kill -9`` included) still stops its ranks;
- data workers (DataLoader workers, decoding pools) are shielded by :func:`shield_worker`: they ignore
  SIGINT and any SIGTERM that does not come from the training process that owns them, so a signal sent
  to the whole tree no longer kills them under the training loop (torch then raised "DataLoader worker
  ... is killed by signal: Terminated" and no checkpoint was written); their owner ends them as usual,
  and they die with it (``PR_SET_PDEATHSIG`` = SIGKILL). They are started through
  :func:`worker_context`, whose processes are born with SIGTERM and SIGINT held (blocked in the thread
  that starts them, a mask the child inherits through fork and exec), so a signal that reaches a worker
  while it is still starting waits for the shield instead of killing it (torch's default handling).

A second SIGINT (Ctrl+C twice) interrupts at once, as Python does by default.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing.context
import os
import signal
import sys
import threading
from collections.abc import Callable

import torch

__all__ = [
    "EXIT_STOPPED",
    "StopRequest",
    "TrainingStopped",
    "shield_worker",
    "stop_signals_held",
    "worker_context",
    "worker_shield",
]

logger = logging.getLogger(__name__)

EXIT_STOPPED = 128 + signal.SIGTERM


class TrainingStopped(Exception):
    """Raised at a safe point after a stop was agreed; the run unwinds, saves what it must and exits 143.

    Args:
        phase: Where the run was (``"training"``, ``"validation"``, ``"final test"``, ...).
        note: What was saved and how to continue (for the message the run prints).
    """

    def __init__(self, phase: str = "training", note: str = ""):
        super().__init__(phase, note)
        self.phase = phase
        self.note = note


class StopRequest:
    """Turns SIGTERM/SIGINT (and the launcher's death) into a stop at the next safe point.

    Args:
        accelerator: Used to agree on the stop across processes.
        watch_parent: Ask for SIGTERM when the parent process dies (Linux only; elsewhere a no-op).
            Only for processes started by a launcher; a library user calling the run in-process
            leaves it off.
        every: With several processes, agree on a stop every this many steps or batches.
    """

    def __init__(self, accelerator, watch_parent: bool = True, every: int = 10):
        self.accelerator = accelerator
        self.every = every
        self.signal: str | None = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        if watch_parent:
            _die_with_parent(signal.SIGTERM)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal == "SIGINT":
            raise KeyboardInterrupt  # Ctrl+C twice: stop now
        first = self.signal is None
        self.signal = signal.Signals(signum).name
        if first:
            print(
                f"skinacc: {self.signal} received, stopping at the next safe point (a checkpoint is saved if needed)",
                file=sys.stderr,
                flush=True,
            )

    def requested(self, step: int, force: bool = False) -> bool:
        """Whether any process was asked to stop, the same answer on every process.

        Call it at the same points on every process (after each optimizer step with the step count,
        after each evaluation batch with its number). With several processes the ranks agree only
        every ``every``-th call (an all-reduce, and on a GPU a host sync, at every step would cost
        speed), or at once with ``force`` (points that come rarely, e.g. the end of an epoch).
        """
        if self.accelerator.num_processes == 1:
            return self.signal is not None
        if step % self.every and not force:
            return False
        t = torch.tensor([1.0 if self.signal else 0.0], device=self.accelerator.device)
        return float(self.accelerator.reduce(t, reduction="sum").item()) > 0

    def check(self, phase: str, step: int = 0, force: bool = True) -> None:
        """Raise :class:`TrainingStopped` for ``phase`` if a stop was agreed (see :meth:`requested`)."""
        if self.requested(step, force=force):
            raise TrainingStopped(phase)

    def checker(self, phase: str) -> Callable[[int], None]:
        """``check`` bound to ``phase`` at the every-N cadence: for a loop that calls it with its count."""
        return functools.partial(self._check_at, phase)

    def _check_at(self, phase: str, step: int) -> None:
        self.check(phase, step, force=False)

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> StopRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        return libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError) as e:  # no prctl: the signal handlers still work
        logger.warning("cannot ask to be stopped with the launcher (%s)", e)
        return False


def _die_with_parent(sig: int) -> None:
    parent = os.getppid()
    if _prctl_pdeathsig(sig) and parent == 1:
        os.kill(os.getpid(), sig)  # the parent died before prctl: behave as if the signal came


def shield_worker(owner: int, worker_id: int | None = None) -> None:
    """Shield a data worker process (a DataLoader worker or a decoding pool's) from stop signals meant
    for the training process ``owner`` that started it. Call it first thing in the worker.

    - SIGINT is ignored: Ctrl+C reaches the whole foreground process group; the owner handles it.
    - SIGTERM is obeyed only when ``owner`` sends it (that is how a DataLoader or a pool ends its
      workers); from anyone else (a launcher or scheduler signalling the whole tree) it is ignored, so
      the owner can finish its step and save. A thread waits for the signal (``sigwaitinfo`` tells who
      sent it; a Python signal handler cannot).
    - The worker dies with its owner (``PR_SET_PDEATHSIG`` = SIGKILL on Linux) when the owner is its
      parent (fork), so a killed training process leaves no workers behind.

    Args:
        owner: PID of the training process (``os.getpid()`` there, when the loader or pool is built).
        worker_id: Unused; the DataLoader ``worker_init_fn`` signature.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also drops a Ctrl+C held since the worker's start
    if not hasattr(signal, "sigwaitinfo"):  # not Linux: leave SIGTERM as it is
        return
    # SIGTERM stays blocked (from birth, see worker_context): the thread below takes every one,
    # including any that arrived while the worker was starting.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_obey_owner_sigterm, args=(owner,), name="skinacc-sigterm", daemon=True).start()
    if os.getppid() == owner:
        _prctl_pdeathsig(signal.SIGKILL)
        if os.getppid() != owner:  # the owner died before prctl
            os._exit(0)


def _obey_owner_sigterm(owner: int) -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == owner:
            os._exit(0)


def worker_shield() -> Callable[..., None]:
    """A ``worker_init_fn`` / pool ``initializer`` that applies :func:`shield_worker` for this process."""
    return functools.partial(shield_worker, os.getpid())


@contextlib.contextmanager
def stop_signals_held():
    """Hold SIGTERM and SIGINT in this thread for the block: one sent to this thread meanwhile is
    delivered when the block ends (nothing is lost; one sent to the whole process may be taken by
    another thread), and a process started inside is born with both blocked (a child inherits the
    mask of the thread that starts it).

    Keep the block short: it is for starting processes (see :func:`worker_context`).
    """
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _ShieldedWorker:
    """A ``multiprocessing`` process for a :func:`shield_worker`: born with stop signals held, and
    ended by its owner with SIGKILL."""

    def start(self) -> None:
        with stop_signals_held():
            super().start()

    def terminate(self) -> None:
        # A SIGTERM from the owner (what Process.terminate sends) that arrives while a launcher's
        # SIGTERM is still held in a starting worker merges with it (one pending signal of a kind) and
        # is lost to the shield, which then ignores the launcher's: the worker would live on and a
        # pool's terminate() would wait for it forever. SIGKILL cannot be merged, and a shielded
        # worker ends on its owner's SIGTERM without any clean-up anyway.
        self.kill()


class _ShieldedSpawnProcess(_ShieldedWorker, multiprocessing.context.SpawnProcess):
    pass


class _ShieldedSpawnContext(multiprocessing.context.SpawnContext):
    Process = _ShieldedSpawnProcess


_CONTEXTS: dict[str, type[multiprocessing.context.BaseContext]] = {"spawn": _ShieldedSpawnContext}

if hasattr(multiprocessing.context, "ForkProcess"):  # POSIX

    class _ShieldedForkProcess(_ShieldedWorker, multiprocessing.context.ForkProcess):
        pass

    class _ShieldedForkContext(multiprocessing.context.ForkContext):
        Process = _ShieldedForkProcess

    _CONTEXTS["fork"] = _ShieldedForkContext

#: The start methods :func:`worker_context` offers. Not forkserver: its workers are forked by a server
#: process started once, whose signal mask a start here cannot set.
WORKER_START_METHODS = tuple(sorted(_CONTEXTS))


def worker_context(method: str | None = None) -> multiprocessing.context.BaseContext:
    """A ``multiprocessing`` context for data workers (a DataLoader's ``multiprocessing_context``, a
    pool's context) whose processes are born with SIGTERM and SIGINT held, so the window between a
    worker's start and its :func:`shield_worker` is closed: a launcher's SIGTERM that arrives then
    waits for the shield, which ignores it. Without it, such a signal met torch's or Python's default
    handling and killed the worker. Their ``terminate()`` (how a DataLoader or pool ends them) sends
    SIGKILL, which a held SIGTERM cannot swallow.

    Args:
        method: ``"fork"`` or ``"spawn"``; default ``"fork"`` where the platform has it (as torch's
            DataLoader on Linux), else ``"spawn"``.

    Raises:
        ValueError: ``method`` is not one of :data:`WORKER_START_METHODS`.
    """
    if method is None:
        method = "fork" if "fork" in _CONTEXTS else "spawn"
    if method not in _CONTEXTS:
        raise ValueError(f"worker start method {method!r}: must be one of {', '.join(WORKER_START_METHODS)}")
    return _CONTEXTS[method]()
