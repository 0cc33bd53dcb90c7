"""A run's output folder: never silently reused, held by one run at a time, checked before any work.

- :func:`output_dir_problem`: is ``--output_dir`` usable at all (not under a file, writable)? Checked
  when the flags are validated, so a bad path fails in one line before data or model set-up.
- :func:`claim_output_dir`: a fresh run refuses a folder that already holds a run, unless it resumes
  (``--resume_from_checkpoint``) or the user says ``--overwrite_output_dir`` (then the previous run's
  files, and only those skinacc writes, are removed first); and it takes a lock for the run's lifetime.
- :class:`RunLock`: an exclusive ``flock`` on ``<output_dir>/.skinacc.lock``. The kernel drops it when
  the holder dies, however it dies, so a stale lock never blocks a new run; the file names the holder
  (host, pid, start time) for the message a second run prints.
- :func:`atomic_write` (text or bytes), :func:`write_text`, :func:`write_json`, :func:`write_rows`, :func:`write_history`:
  files written atomically (a temporary file renamed over the old one), so a crash, a stop or a full
  disk leaves the previous file or the new one whole, never half of one.
- :func:`read_cv_report`, :func:`oof_temperature`: a finished cross-validation folder's report, read
  where a config value names one (``--calibrate_from``) as well as by the runs that use it.
- :func:`disk_space_guard`: a write that fails because the disk is full becomes one
  :class:`DiskFullError` line saying where, how much the write needed and how much is free.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CV_REPORT",
    "RUN_FILES",
    "DiskFullError",
    "OutputDirError",
    "RunLock",
    "atomic_folder",
    "atomic_write",
    "claim_output_dir",
    "disk_space_guard",
    "folder_bytes",
    "free_bytes",
    "human_bytes",
    "oof_temperature",
    "output_dir_problem",
    "previous_run_files",
    "read_cv_report",
    "replace_folder",
    "write_history",
    "write_json",
    "write_rows",
    "write_text",
]

LOCK_NAME = ".skinacc.lock"
#: What a training run writes into its output folder (with ``eval_*`` folders: what
#: --overwrite_output_dir removes).
RUN_FILES = (
    "checkpoints",
    "best",
    "eval_test",
    "hub",
    "logs",
    "history.json",
    "history.csv",
    "summary.json",
    "run_config.yaml",
    "run_config.json",
    "config.yaml",  # skinacc < 0.2 wrote the run config under these names
    "config.json",
    "data_report.json",
    "skipped_images.jsonl",
    "training_curves.png",
)


class OutputDirError(RuntimeError):
    """The output folder cannot be used for this run (in use, holds another run, not writable)."""


class DiskFullError(OutputDirError):
    """A write into the run's folder failed because its file system is full (or over quota)."""


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KB'``: decimal units, as ``df -H`` and most file managers show them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes a non-root user can still write on the file system of ``path`` (or of its nearest
    existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return shutil.disk_usage(p).free


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


#: Less free space than this after a failed write means the write failed for want of space (torch's
#: writer reports a full disk as "unexpected pos", without the errno).
_NEARLY_FULL = 1 << 20


def _is_disk_full(exc: BaseException, path: Path) -> bool:
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    try:
        return free_bytes(path) < _NEARLY_FULL
    except OSError:
        return False


@contextlib.contextmanager
def disk_space_guard(
    path: str | os.PathLike,
    what: str,
    needed: int | None = None,
    partial: str | os.PathLike | None = None,
    then: str = "continue with --resume_from_checkpoint latest",
) -> Iterator[None]:
    """Turn a write that fails on a full disk into one :class:`DiskFullError` line.

    Args:
        path: Where the write goes (a file or folder; its file system is the one checked).
        what: What was being written, for the message (e.g. "checkpoint step_00000006").
        needed: About how many bytes the write needs, when known.
        partial: A file or folder the failed write leaves behind; removed before the error is raised
            (so its space is free again), whatever the error.
        then: What the user does once space is free (the end of the message).

    Raises:
        DiskFullError: The write failed and the file system is full; other errors pass unchanged.
    """
    path = Path(path)
    try:
        yield
    except BaseException as e:
        full = not isinstance(e, KeyboardInterrupt | SystemExit) and _is_disk_full(e, path)
        written = folder_bytes(partial) if partial is not None else 0
        if partial is not None:
            p = Path(partial)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if not full:
            raise
        need = f"needs about {human_bytes(needed)}" if needed else "needs more space"
        done = f" ({human_bytes(written)} were written before it failed, and removed)" if written else ""
        raise DiskFullError(
            f"no space left on the device of {str(path)!r}: {what} {need}{done}, and "
            f"{human_bytes(free_bytes(path))} is free; free some space (or give another --output_dir), then {then}"
        ) from e


def output_dir_problem(path: str | os.PathLike, flag: str = "--output_dir") -> str | None:
    """Why ``path`` cannot be an output folder (``None`` if it can): a file in the way, or no write access
    to it or to the nearest existing folder above it."""
    p = Path(path).expanduser().absolute()
    cur = p
    while not cur.exists():
        if cur.parent == cur:
            break
        cur = cur.parent
    if cur.exists() and not cur.is_dir():
        where = "is a file" if cur == p else f"is under {str(cur)!r}, which is a file"
        return f"{flag}={str(path)!r}: {where}; give a folder"
    if not os.access(cur, os.W_OK | os.X_OK):
        where = "is not writable" if cur == p else f"cannot be created: {str(cur)!r} is not writable"
        return f"{flag}={str(path)!r}: {where}"
    return None


def previous_run_files(out: str | os.PathLike) -> list[str]:
    """The files and folders of a previous training run in ``out``."""
    out = Path(out)
    found = [n for n in RUN_FILES if (out / n).exists()]
    found = [n for n in found if not (n == "checkpoints" and not any((out / n).iterdir()))]
    # Evaluations of that run's model (recipes/evaluate.py writes eval_<split or folder> beside it).
    return found + sorted(p.name for p in out.glob("eval_*") if p.is_dir() and p.name not in found)


class RunLock:
    """An exclusive, kernel-held lock on ``<folder>/.skinacc.lock`` (POSIX ``flock``).

    Raises:
        OutputDirError: Another live process holds it (the message names host, pid and start).
    """

    def __init__(self, folder: str | os.PathLike):
        import fcntl

        self.path = Path(folder) / LOCK_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._read_holder()
            os.close(self._fd)
            self._fd = None
            raise OutputDirError(
                f"--output_dir={str(self.path.parent)!r} is in use by another run "
                f"(host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {holder.get('started', '?')}); "
                "wait for it to finish, stop it, or choose another --output_dir"
            ) from None
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(info).encode(), 0)

    def _read_holder(self) -> dict[str, Any]:
        try:
            return json.loads(os.pread(self._fd, 4096, 0) or b"{}")
        except (OSError, json.JSONDecodeError):
            return {}

    def release(self) -> None:
        """Drop the lock (it is also dropped when the process ends)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_output_dir(out: str | os.PathLike, resume: bool, overwrite: bool) -> RunLock:
    """Lock ``out`` for this run and make sure it will not mix two runs. Call on the main process only.

    Args:
        out: The run's output folder (created if missing).
        resume: The run continues from a checkpoint in ``out`` (its files are this run's).
        overwrite: The user asked to replace a previous run's files (``--overwrite_output_dir``).

    Returns:
        The held :class:`RunLock`.

    Raises:
        OutputDirError: The folder is locked by a live run, or holds a previous run and neither
            ``resume`` nor ``overwrite`` was given.
    """
    out = Path(out)
    lock = RunLock(out)  # first: nothing is checked or removed while another run may be writing
    found = previous_run_files(out)
    if found and not resume:
        if not overwrite:
            lock.release()
            raise OutputDirError(
                f"--output_dir={str(out)!r} already holds a training run ({', '.join(found)}); "
                "resume it with --resume_from_checkpoint latest, replace it with --overwrite_output_dir, "
                "or choose another --output_dir"
            )
        for name in found:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return lock


# ----------------------------------------------------------------------------------------------------
# The run's files, written atomically (main process)


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``folder`` for the block to fill; it takes ``folder``'s place
    (:func:`replace_folder`) when the block ends without an error, and is removed when it does not."""
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        yield tmp
        replace_folder(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(tmp: Path, folder: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``folder`` (made or replaced) by renames, so a
    crash leaves the old folder or the new one whole, never a mix."""
    old = folder.with_name(f".old-{folder.name}")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, newline: str | None = None, binary: bool = False) -> Iterator[IO]:
    """Open ``path`` for writing; what the block writes replaces ``path`` only if the block ends
    without an error (a temporary file beside it, renamed over it), so a reader or a crash never sees
    half a file and an error keeps the previous one.

    Args:
        path: The file to write (its folder is made).
        newline: As for :func:`open` (``""`` for :mod:`csv` writers); text only.
        binary: Open the file for bytes (figures) instead of text.

    Yields:
        The open temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") if binary else tmp.open("w", newline=newline) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (:func:`atomic_write`)."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically."""
    return write_text(path, json.dumps(data, indent=2, default=float))


def write_rows(
    path: str | os.PathLike, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None
) -> None:
    """Write result rows as ``<path>.csv`` (union of keys as columns) and ``<path>.json`` (with ``meta``), atomically."""
    path = Path(path)
    write_json(path.with_suffix(".json"), rows if meta is None else {"meta": meta, "results": rows})
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path.with_suffix(".csv"), newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_history(output_dir: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Write the per-epoch history as ``history.json`` and ``history.csv``."""
    write_rows(Path(output_dir) / "history", history)


#: A finished cross-validation's report, in its output folder (written by :mod:`skinacc.run.cv`).
CV_REPORT = "cv_report.json"


def read_cv_report(cv_dir: str | Path) -> dict[str, Any]:
    """A cross-validation folder's ``cv_report.json``.

    Raises:
        FileNotFoundError: ``cv_dir`` holds no report (not a finished ``--cv_folds`` run).
    """
    path = Path(cv_dir) / CV_REPORT
    if not path.is_file():
        raise FileNotFoundError(
            f"{cv_dir}: no {CV_REPORT}; give the --output_dir of a finished --cv_folds run"
        )
    return json.loads(path.read_text())


def oof_temperature(cv_dir: str | Path) -> tuple[float, str]:
    """The temperature fitted on a cross-validation's pooled out-of-fold logits, and the TTA it was fitted at.

    Raises:
        FileNotFoundError: No report. ValueError: A report without the temperature (its folds kept no logits).
    """
    report = read_cv_report(cv_dir)
    if report.get("oof_temperature") is None:
        raise ValueError(f"{Path(cv_dir) / CV_REPORT} has no oof_temperature: its folds' oof.npz keep no "
                         "logits (skinacc < 0.2): run the cross-validation again with --overwrite_output_dir")  # fmt: skip
    return float(report["oof_temperature"]), str(report.get("tta", "none"))
