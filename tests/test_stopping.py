"""A stop that saves (issue #24): data workers that survive a signal sent to the whole process tree, a
checkpoint at the stop step well inside the launcher's grace, stops during validation and the final
test, and saves that fail on a full disk."""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing as mp
import multiprocessing.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from skinacc.checkpoint import MANIFEST, Checkpointer, list_checkpoints
from skinacc.rundir import DiskFullError
from skinacc.stopping import TrainingStopped, shield_worker, stop_signals_held, worker_context

from .conftest import ACCELERATE, REPO, TINY, run_recipe, train

# ----------------------------------------------------------------------------------------------------
# Data workers


def _shielded_sleeper(owner: int, ready) -> None:
    shield_worker(owner)
    ready.set()
    time.sleep(60)


def test_shielded_worker_ignores_a_foreign_sigterm_and_obeys_its_owner():
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    worker = ctx.Process(target=_shielded_sleeper, args=(os.getpid(), ready), daemon=True)
    worker.start()
    try:
        assert ready.wait(10)
        # A launcher or scheduler signalling the whole tree, and Ctrl+C reaching the process group.
        subprocess.run(["kill", "-TERM", str(worker.pid)], check=True)
        subprocess.run(["kill", "-INT", str(worker.pid)], check=True)
        time.sleep(0.5)
        assert worker.is_alive(), "a SIGTERM from another process is left to the training process"
        os.kill(worker.pid, signal.SIGTERM)  # its owner ends it, as a DataLoader or a pool does
        worker.join(5)
        assert worker.exitcode == 0
    finally:
        if worker.is_alive():
            worker.kill()


def test_stop_signals_held_delivers_them_afterwards():
    """The thread that starts a worker holds stop signals only while it does (the child inherits that
    thread's mask): one sent to it meanwhile reaches the handler when the start is done, not never.
    (A signal sent to the whole process may meanwhile go to another thread: the training process's
    handler only sets a flag, so that is harmless.)"""
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with stop_signals_held():
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            time.sleep(0.05)
            assert got == []
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_worker_context_names_the_start_methods_it_offers():
    assert worker_context("spawn").get_start_method() == "spawn"
    with pytest.raises(ValueError, match=r"'forkserver': must be one of fork, spawn"):
        worker_context("forkserver")


class _SlowToStart(torch.utils.data.Dataset):
    """A small dataset whose workers take ``START_S`` to start: the window between a worker's birth and
    the moment its shield is up, made wide on purpose. A spawned worker unpickles its dataset first
    thing (``__setstate__`` sleeps); a forked one runs multiprocessing's after-fork hooks first (one
    registered here sleeps). Both run before torch's worker loop and its ``worker_init_fn``."""

    START_S = 0.6

    def __init__(self):
        multiprocessing.util.register_after_fork(self, _SlowToStart._slow_start)

    def _slow_start(self) -> None:
        time.sleep(self.START_S)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._slow_start()

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict:
        time.sleep(0.005)
        return {"pixel_values": torch.zeros(3, 8, 8, dtype=torch.uint8), "labels": i % 2, "sample_id": i}


def _sigterm_all(workers) -> None:
    """SIGTERM from another process (``kill``), as a launcher or scheduler signalling the tree does."""
    subprocess.run(["kill", "-TERM", *(str(w.pid) for w in workers)], check=True)


@pytest.mark.parametrize(
    ("start_method", "persistent", "epochs"),
    [("fork", True, 3), ("fork", False, 6), ("spawn", True, 1), ("spawn", False, 2)],
)
def test_loader_workers_survive_a_sigterm_from_their_first_instant(start_method, persistent, epochs):
    """A SIGTERM that reaches a worker before its shield is up (at once after the iterator is made,
    while the worker is still starting) left it to torch's default handling, which kills it: the
    training process then died with "DataLoader worker (pid ...) is killed by signal: Terminated"
    without its stop checkpoint. Workers now start with stop signals held, so from the moment they
    exist only their owner's SIGTERM ends them. Signalled again mid-epoch; every epoch starts workers
    anew when they are not persistent."""
    from skinacc.data import build_dataloader

    loader = build_dataloader(
        _SlowToStart(),
        4,
        train=False,
        num_workers=2,
        persistent_workers=persistent,
        start_method=start_method,
    )
    for _ in range(epochs):
        it = iter(loader)
        _sigterm_all(it._workers)  # at once: every worker is still starting (START_S)
        seen = 0
        for i, batch in enumerate(it):
            seen += len(batch["labels"])
            if i == 3:
                _sigterm_all(it._workers)  # and again mid-epoch
        assert seen == 32
        assert all(w.is_alive() for w in it._workers) == persistent
    if persistent:
        it._shutdown_workers()
        assert not any(w.is_alive() for w in it._workers), "their owner still ends them"


def test_pool_workers_survive_a_sigterm_from_their_first_instant():
    """The decoding pool (streaming, predict) starts its workers the same way: a worker killed before
    its shield was up was replaced silently, and one killed with a task lost that task for good (the
    result never came)."""
    from skinacc.data.pool import make_pool

    holder = _SlowToStart()  # registers the slow after-fork start for the pool's forks
    pool = make_pool(2)
    try:
        pids = [p.pid for p in pool._pool]
        subprocess.run(["kill", "-TERM", *map(str, pids)], check=True)
        results = [pool.apply_async(abs, (i,)) for i in range(-20, 0)]
        assert [r.get(timeout=30) for r in results] == list(range(20, 0, -1))  # no task lost
        assert [p.pid for p in pool._pool] == pids, "no worker died and was replaced"
        assert all(p.is_alive() for p in pool._pool)
        # Its owner still ends it, even a worker whose held launcher SIGTERM is still pending (the
        # owner's SIGTERM merged into it and was lost: terminate() waited forever).
        ended = threading.Thread(target=pool.terminate, daemon=True)
        ended.start()
        ended.join(30)
        assert not ended.is_alive(), "pool.terminate() hangs on a worker that never ends"
        assert not any(p.is_alive() for p in pool._pool)
    finally:
        for p in pool._pool:
            if p.is_alive():
                p.kill()
    del holder


# ----------------------------------------------------------------------------------------------------
# SIGTERM to a launched run, 1 and 2 processes, to the launcher or to a rank (with loader workers)

STOP_ARGS = [
    *TINY,
    "--batch_size",
    "4",
    "--num_workers",
    "1",
    "--epochs",
    "4",
    "--early_stopping_patience",
    "0",
]


def _launch_cmd(processes: int) -> tuple[list[str], dict]:
    cfg = "cpu_2proc.yaml" if processes == 2 else "cpu.yaml"
    cmd = [ACCELERATE, "launch", "-q", "--config_file", str(REPO / "accelerate_configs" / cfg)]
    # The thread count run_recipe uses: the uninterrupted runs must do the same arithmetic.
    cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if processes == 2:
        cmd += ["--mixed_precision", "no"]
        env["ACCELERATE_USE_CPU"] = "1"
    return [*cmd, str(REPO / "recipes" / "train.py")], env


def _two_proc_kw(processes: int) -> dict:
    if processes == 1:
        return {}
    return {
        "config": "cpu_2proc.yaml",
        "env": {"ACCELERATE_USE_CPU": "1"},
        "extra_launch": ["--mixed_precision", "no"],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, Path]:
    """The same runs, never stopped, for 1 process (in this process: the same arithmetic as a launch
    with its thread count) and 2 processes."""
    refs = {}
    for processes in (1, 2):
        out = tmp_path_factory.mktemp("uninterrupted") / f"{processes}proc"
        if processes == 1:
            train([*STOP_ARGS, "--output_dir", str(out)])
        else:
            run_recipe("train.py", [*STOP_ARGS, "--output_dir", str(out)], **_two_proc_kw(processes))
        refs[processes] = out
    return refs


HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "global_step",
    "is_best",
)


def _history_values(run: Path) -> list[dict]:
    return [{k: r[k] for k in HISTORY_KEYS} for r in json.loads((run / "history.json").read_text())]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _history_values(a) == _history_values(b)
    wa, wb = (
        load_file(str(a / "best" / "model.safetensors")),
        load_file(str(b / "best" / "model.safetensors")),
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((r / "eval_test" / "metrics.json").read_text()) for r in (a, b))
    for k in ("accuracy", "balanced_accuracy", "roc_auc_macro", "num_samples"):
        assert ma[k] == mb[k], k


@pytest.mark.slow
@pytest.mark.parametrize("processes,target", [(1, "launcher"), (1, "rank"), (2, "launcher"), (2, "rank")])
def test_sigterm_saves_at_the_stop_step_and_resume_equals_uninterrupted(
    tmp_path, uninterrupted, processes, target
):
    import psutil

    out = tmp_path / "run"
    cmd, env = _launch_cmd(processes)
    log = (tmp_path / "launch.log").open("w")  # a file: an unread pipe fills up and blocks the run
    launcher = subprocess.Popen(
        [*cmd, *STOP_ARGS, "--output_dir", str(out)], cwd=REPO, env=env,
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while not list_checkpoints(out / "checkpoints"):  # the first epoch is done: stop inside the second
            assert launcher.poll() is None and time.time() < deadline, (tmp_path / "launch.log").read_text()
            time.sleep(0.02)
        first = list_checkpoints(out / "checkpoints")
        ranks = [c for c in psutil.Process(launcher.pid).children() if "train.py" in " ".join(c.cmdline())]
        assert len(ranks) == processes and all(r.children() for r in ranks), "ranks with loader workers"
        victim = launcher.pid if target == "launcher" else min(r.pid for r in ranks)
        os.kill(victim, signal.SIGTERM)
        launcher.wait(120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "launch.log").read_text()
    # The launcher exits 143 when it was signalled; a signalled rank exits 143 and the launcher reports
    # the failed child (accelerate -q: status 1).
    assert launcher.returncode == (143 if target == "launcher" else 1), text[-3000:]
    assert "killed by signal" not in text and "Traceback" not in text, text[-3000:]
    assert "SIGTERM received" in text
    # accelerate's one-process launcher relays the rank's stderr (progress bars) late, so the line may
    # follow a bar's fragment in the combined log; on a terminal it starts its own line.
    found = re.search(r"stopped by SIGTERM during [^\r\n]*", text)
    stopped = found.group(0) if found else text[-3000:]
    assert stopped.startswith("stopped by") and "continue with --resume_from_checkpoint latest" in stopped, (
        stopped
    )
    saved = list_checkpoints(out / "checkpoints")
    assert saved[-1] not in first, "a checkpoint was saved at the stop"
    manifest = json.loads((saved[-1] / MANIFEST).read_text())
    assert saved[-1].name == f"step_{manifest['global_step']:08d}"
    if "during training" in stopped:  # at the step the stop was agreed on (every 10th with 2 processes)
        assert manifest["batch_in_epoch"] > 0 and str(saved[-1]) in stopped
        assert processes == 1 or manifest["global_step"] % 10 == 0
    resume = [*STOP_ARGS, "--output_dir", str(out), "--resume_from_checkpoint", "latest"]
    if processes == 1:  # the resume is no launch's business: in this process
        train(resume)
    else:  # a mid-epoch checkpoint resumes with the world size it was saved with
        run_recipe("train.py", resume, **_two_proc_kw(processes))
    _assert_same_run(uninterrupted[processes], out)


# ----------------------------------------------------------------------------------------------------
# Stops during validation and during the final test (the run in-process, the signal sent to itself)


def _signal_on(calls: list, when) -> callable:
    def hook(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        if when(calls):
            os.kill(os.getpid(), signal.SIGTERM)
        return hook.real(*args, **kwargs)

    return hook


@pytest.mark.parametrize("where", ["validation", "final test"])
def test_a_stop_during_validation_or_the_final_test_resumes_exactly(tmp_path, monkeypatch, capsys, where):
    """A TrainingRun in this process, the SIGTERM sent to the process itself."""
    import skinacc.evaluation.loop
    import skinacc.run.training

    args = [*TINY, "--epochs", "2", "--early_stopping_patience", "0", "--calibrate"]
    ref = tmp_path / "ref"
    train([*args, "--output_dir", str(ref)])
    ref_hist = json.loads((ref / "history.json").read_text())

    calls: list = []
    # Validation is the run's call of evaluate; the calibration and test, calibrate_and_test's.
    module = skinacc.run.training if where == "validation" else skinacc.evaluation.loop
    if where == "validation":  # the second epoch's validation
        hook = _signal_on(calls, lambda c: c.count("validate") == 2 and c[-1] == "validate")
    else:  # the final test, after the calibration on validation
        hook = _signal_on(calls, lambda c: c[-1] == "test")
    hook.real = module.evaluate
    monkeypatch.setattr(module, "evaluate", hook)
    out = tmp_path / "stopped"
    capsys.readouterr()
    with pytest.raises(TrainingStopped) as stop:
        train([*args, "--output_dir", str(out)])
    assert stop.value.phase == where
    printed = capsys.readouterr().out
    assert f"stopped by SIGTERM during {where}" in printed
    manifest = json.loads((list_checkpoints(out / "checkpoints")[-1] / MANIFEST).read_text())
    if where == "validation":
        # The epoch's training is saved (not yet counted as done); validation runs again on resume.
        assert "checkpoint" in printed and "saved" in printed
        assert (manifest["epoch"], manifest["global_step"]) == (1, ref_hist[1]["global_step"])
        assert manifest["batch_in_epoch"] > 0
    else:  # nothing new to save: the last epoch's checkpoint holds the training
        assert "holds the training" in printed
        assert (manifest["epoch"], manifest["batch_in_epoch"]) == (2, 0)
        assert not (out / "summary.json").exists() and not (out / "eval_test").exists()
    monkeypatch.setattr(module, "evaluate", hook.real)
    train([*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    _assert_same_run(ref, out)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (ref, out))
    assert sa["calibration_val_temperature"] == sb["calibration_val_temperature"]


# ----------------------------------------------------------------------------------------------------
# Saves on a full disk


def _checkpointer(folder: Path, width: int = 16):
    from accelerate import Accelerator

    from skinacc.engine import TrainState

    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Linear(width, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    model(torch.randn(2, width)).sum().backward()
    opt.step()
    state = TrainState()
    ckpt = Checkpointer(acc, folder / "checkpoints", {"model": "m"}, {"train_state": state}, 1, {})
    return ckpt, state, model, opt


@pytest.mark.parametrize("failure", ["enospc", "torch_unexpected_pos"])
def test_a_save_that_fills_the_disk_says_so_and_leaves_no_partial_folder(tmp_path, monkeypatch, failure):
    import accelerate.checkpointing

    ckpt, state, *_ = _checkpointer(tmp_path)
    state.global_step = 3
    good = ckpt.save()
    real_save = accelerate.checkpointing.save

    def failing_save(obj, f, *a, **kw):  # writes part of the file, then the disk is full
        Path(f).write_bytes(b"x" * 1000)
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        # torch's writer reports a full disk without the errno; the free space tells
        monkeypatch.setattr("skinacc.rundir.free_bytes", lambda path: 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(accelerate.checkpointing, "save", failing_save)
    state.global_step = 6
    with pytest.raises(DiskFullError) as e:
        ckpt.save()
    msg = str(e.value)
    assert "\n" not in msg and "no space left on the device of" in msg and "checkpoints" in msg
    assert "saving checkpoint step_00000006 needs about" in msg and "is free" in msg
    assert "continue with --resume_from_checkpoint latest" in msg
    assert not list((tmp_path / "checkpoints").glob(".tmp-*")), "the partial save is removed"
    assert list_checkpoints(tmp_path / "checkpoints") == [good]
    monkeypatch.setattr(accelerate.checkpointing, "save", real_save)
    monkeypatch.undo()
    ckpt.save()  # once there is space again, saving (and so resuming) works
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000006"]


def test_other_save_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    import accelerate.checkpointing

    ckpt, state, *_ = _checkpointer(tmp_path)

    def broken(*a, **kw):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(accelerate.checkpointing, "save", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        ckpt.save()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_what_a_killed_save_left_is_cleared_at_the_next_start(tmp_path):
    ckpt, state, *_ = _checkpointer(tmp_path)
    for step in (3, 6):
        state.global_step = step
        ckpt.save()
    d = tmp_path / "checkpoints"
    (d / ".tmp-step_00000009").mkdir()
    (d / ".tmp-step_00000009" / "model.safetensors").write_bytes(b"\0" * 10_000)
    # A kill between the two renames of a re-save at step 6: the only complete copy is .old-step_6.
    (d / "step_00000006").rename(d / ".old-step_00000006")
    ckpt2, state2, *_ = _checkpointer(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == ["step_00000006"]
    ckpt2.resume("latest")
    assert state2.global_step == 6


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB file system (tmpfs; needs root, as in CI): skipped where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk(small_disk, caplog):
    """About 3.2 MB per checkpoint on a 6 MB disk: the second save cannot fit beside the first (a
    checkpoint is pruned only once its successor is complete)."""
    ckpt, state, model, opt = _checkpointer(small_disk, width=512)
    caplog.set_level("WARNING")
    need = ckpt.warn_if_disk_is_short(model, opt)
    assert 3e6 < need < 3.5e6 and "the first save will fail" not in caplog.text
    state.global_step = 1
    first = ckpt.save()
    state.global_step = 2
    with pytest.raises(DiskFullError, match="no space left on the device .* saving checkpoint step_00000002"):
        ckpt.save()
    assert not list((small_disk / "checkpoints").glob(".tmp-*"))
    assert list_checkpoints(small_disk / "checkpoints") == [first]
    caplog.clear()
    ckpt2, state2, model2, opt2 = _checkpointer(small_disk, width=512)
    ckpt2.resume("latest")  # at once: nothing was left behind to fill the disk
    assert state2.global_step == 1
    ckpt2.warn_if_disk_is_short(model2, opt2)  # 2.8 MB free, 3.2 MB needed
    assert "the first save will fail" in caplog.text


def test_a_full_disk_while_writing_the_run_config_is_one_line(tmp_path, monkeypatch):
    from skinacc.config import DataArguments, save_config

    def full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError, match=r"writing run_config.yaml needs about \d"):
        save_config(tmp_path / "run_config.yaml", DataArguments())
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------------
# A launcher killed outright


@pytest.mark.slow
def test_training_processes_still_stop_when_their_launcher_is_killed(tmp_path):
    """kill -9 of the launcher: the ranks (asked for SIGTERM at their parent's death) stop too."""
    import psutil

    out = tmp_path / "run"
    cmd, env = _launch_cmd(2)
    launcher = subprocess.Popen(
        [*cmd, *STOP_ARGS, "--epochs", "200", "--output_dir", str(out)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while not list_checkpoints(out / "checkpoints"):
            assert launcher.poll() is None and time.time() < deadline
            time.sleep(0.05)
        tree = [c.pid for c in psutil.Process(launcher.pid).children(recursive=True)]
        os.kill(launcher.pid, signal.SIGKILL)
        end = time.time() + 90
        while time.time() < end and any(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in tree
        ):
            time.sleep(0.2)
        alive = [
            p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        assert alive == [], "every training process and worker ends with its launcher"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
