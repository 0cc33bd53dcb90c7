"""What careful users hit: tampered checkpoints, reused and shared output folders, signals, bad images,
and the conventions other clients expect (issue #11)."""

import contextlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from skinacc.checkpoint import Checkpointer, CheckpointError, list_checkpoints
from skinacc.rundir import OutputDirError, RunLock, claim_output_dir, output_dir_problem

from .conftest import ACCELERATE, REPO, TINY, run_recipe

# ----------------------------------------------------------------------------------------------------
# Checkpoints hold plain data only


class _Counter:
    """A stand-in for skinacc's plain-data state objects."""

    def __init__(self, n=0):
        self.n = n

    def state_dict(self):
        return {"n": self.n, "inf": float("inf")}

    def load_state_dict(self, sd):
        self.n = sd["n"]


def _checkpointer(tmp_path, n=0):
    from accelerate import Accelerator

    from skinacc.engine import TrainState

    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model, opt = acc.prepare(
        torch.nn.Linear(3, 2), torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    )
    state = TrainState()
    ema = torch.nn.Linear(3, 2)
    states = {"counter": _Counter(n), "train_state": state, "ema": ema}
    return Checkpointer(
        acc, tmp_path / "checkpoints", {"model": "m"}, states, 3, {"train": {"lr": 0.1}}
    ), states


class _Payload:
    """Unpickling this runs code: it is what a crafted checkpoint file would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_state_is_plain_data_and_round_trips(tmp_path):
    ckpt, states = _checkpointer(tmp_path, n=7)
    states["train_state"].global_step = 5
    path = ckpt.save()
    names = {p.name for p in path.iterdir()}
    assert {"skinacc_state.json", "ema.safetensors", "skinacc_checkpoint.json"} <= names
    assert not any(n.startswith("custom_checkpoint_") for n in names), "nothing pickled by skinacc"
    plain = json.loads((path / "skinacc_state.json").read_text())
    assert plain["counter"]["n"] == 7 and plain["train_state"]["global_step"] == 5
    fresh, fresh_states = _checkpointer(tmp_path / "other")
    fresh.ckpt_dir = ckpt.ckpt_dir
    fresh.resume("latest")
    assert fresh_states["counter"].n == 7 and fresh_states["train_state"].global_step == 5
    assert torch.equal(fresh_states["ema"].weight, states["ema"].weight)
    assert fresh.run_id == ckpt.run_id, "a resumed run keeps its run id"


def test_pickled_objects_in_a_checkpoint_are_refused_never_loaded(tmp_path):
    ckpt, _ = _checkpointer(tmp_path)
    path = ckpt.save()
    marker = tmp_path / "pwned"
    (path / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    fresh, _ = _checkpointer(tmp_path / "x")
    fresh.ckpt_dir = ckpt.ckpt_dir
    with pytest.raises(CheckpointError, match=r"pickled objects \(custom_checkpoint_0.pkl\)"):
        fresh.resume(str(path))
    assert not marker.exists(), "the payload never ran"


@pytest.mark.parametrize(
    "damage",
    ["rng_payload", "rng_missing", "state_json", "ema_missing"],
)
def test_every_part_of_a_checkpoint_must_load(tmp_path, damage):
    ckpt, _ = _checkpointer(tmp_path)
    path = ckpt.save()
    marker = tmp_path / "pwned"
    if damage == "rng_payload":  # accelerate skips an RNG file it cannot load with only a log line
        (path / "random_states_0.pkl").write_bytes(pickle.dumps(_Payload(marker)))
        expect = "random_states_0.pkl does not load as plain RNG states"
    elif damage == "rng_missing":
        (path / "random_states_0.pkl").unlink()
        expect = "random_states_0.pkl .* is missing"
    elif damage == "state_json":
        (path / "skinacc_state.json").write_text("{not json")
        expect = "skinacc_state.json is missing or unreadable"
    else:
        (path / "ema.safetensors").unlink()
        expect = "the 'ema' state does not load"
    fresh, _ = _checkpointer(tmp_path / "x")
    fresh.ckpt_dir = ckpt.ckpt_dir
    with pytest.raises(CheckpointError, match=expect):
        fresh.resume(str(path))
    assert not marker.exists()


def test_pruning_and_latest_only_see_this_runs_checkpoints(tmp_path):
    old, _ = _checkpointer(tmp_path)
    for step in (10, 20, 30):
        old.states["train_state"].global_step = step
        old.save()
    new, _ = _checkpointer(tmp_path / "n")
    new.ckpt_dir = old.ckpt_dir
    for step in (1, 2, 3, 4):
        new.states["train_state"].global_step = step
        new.save()
    mine = list_checkpoints(old.ckpt_dir, new.run_id)
    assert [p.name for p in mine] == ["step_00000002", "step_00000003", "step_00000004"]
    assert len(list_checkpoints(old.ckpt_dir, old.run_id)) == 3, "another run's checkpoints are not pruned"


# ----------------------------------------------------------------------------------------------------
# Output folders


def test_output_dir_problems_are_found_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "which is a file" in output_dir_problem(tmp_path / "file" / "run")
    assert "is a file" in output_dir_problem(tmp_path / "file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("root ignores directory permissions")
        assert "not writable" in output_dir_problem(ro / "run")
    finally:
        ro.chmod(0o700)
    assert output_dir_problem(tmp_path / "new" / "deeper") is None


def test_a_used_output_dir_is_refused_unless_resumed_or_overwritten(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step_00000009").mkdir(parents=True)
    (out / "history.json").write_text("[]")
    (out / "eval_clinic").mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputDirError, match="already holds a training run .*checkpoints.*--overwrite_output_dir"
    ):
        claim_output_dir(out, resume=False, overwrite=False)
    claim_output_dir(out, resume=True, overwrite=False).release()
    claim_output_dir(out, resume=False, overwrite=True).release()
    assert not (out / "checkpoints").exists() and not (out / "history.json").exists()
    assert not (out / "eval_clinic").exists() and (out / "notes.txt").read_text() == "mine", (
        "only run files go"
    )


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO)!r}); from skinacc.rundir import RunLock; "
        f"RunLock({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirError, match=rf"in use by another run .*pid {holder.pid}"):
            RunLock(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.wait()
    RunLock(tmp_path).release()  # the kernel dropped the dead holder's lock: not stale


@pytest.mark.slow
def test_fresh_run_into_used_dir_and_overwrite_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--output_dir", str(out), "--eval_test", "false"]
    run_recipe("train.py", args)
    first = list_checkpoints(out / "checkpoints")
    again = run_recipe("train.py", args, check=False)
    assert again.returncode != 0 and "already holds a training run" in again.stderr
    assert list_checkpoints(out / "checkpoints") == first, "nothing touched"
    run_recipe("train.py", [*args, "--overwrite_output_dir", "--seed", "3"])
    manifest = json.loads((list_checkpoints(out / "checkpoints")[-1] / "skinacc_checkpoint.json").read_text())
    assert manifest["config"]["train"]["seed"] == 3 and len(list_checkpoints(out / "checkpoints")) == 1
    assert not (out / "config.json").exists() and (out / "run_config.yaml").is_file()
    bad = run_recipe("train.py", [*args, "--resume_from_checkpoint", "latest", "--lr", "0.5"], check=False)
    assert bad.returncode != 0 and "--lr=0.5 (the checkpoint's run has 0.001)" in bad.stderr
    under_file = run_recipe("train.py", [*TINY, "--output_dir", str(out / "history.json" / "x")], check=False)
    assert under_file.returncode != 0 and "which is a file" in under_file.stderr
    assert "Traceback" not in under_file.stderr.split("error:")[0], "fails before any set-up"


# ----------------------------------------------------------------------------------------------------
# Stopping


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [
            p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm_launcher", "sigkill_launcher_2proc"])
def test_training_stops_with_its_launcher_and_saves_on_sigterm(tmp_path, how):
    out = tmp_path / how
    two = how.endswith("2proc")
    cfg = "cpu_2proc.yaml" if two else "cpu.yaml"
    extra = ["--mixed_precision", "no"] if two else []
    cmd = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / cfg), *extra]
    cmd += [str(REPO / "recipes" / "train.py"), *TINY, "--epochs", "200", "--output_dir", str(out)]
    cmd += ["--batch_size", "4", "--eval_test", "false", "--early_stopping_patience", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"ACCELERATE_USE_CPU": "1"} if two else {})}
    launcher = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list_checkpoints(out / "checkpoints"):
            assert launcher.poll() is None, launcher.stdout.read()
            time.sleep(0.2)
        workers = _children(launcher.pid)
        assert workers, "training processes found"
        os.kill(launcher.pid, signal.SIGTERM if how == "sigterm_launcher" else signal.SIGKILL)
        assert _wait_gone(workers, 90) == [], "every training process ends with its launcher"
    finally:
        for p in [launcher.pid, *_children(launcher.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        launcher.wait()
    text = launcher.stdout.read()
    last = list_checkpoints(out / "checkpoints")[-1]
    manifest = json.loads((last / "skinacc_checkpoint.json").read_text())
    if how == "sigterm_launcher":
        assert "SIGTERM received" in text and "continue with --resume_from_checkpoint latest" in text
    assert manifest["batch_in_epoch"] > 0 or manifest["epoch"] > 0
    # The run continues from where it stopped.
    resumed = run_recipe(
        "train.py",
        [*TINY, "--epochs", str(manifest["epoch"] + 1), "--output_dir", str(out), "--batch_size", "4",
         "--eval_test", "false", "--early_stopping_patience", "0", "--resume_from_checkpoint", "latest"],
        **({"config": "cpu_2proc.yaml", "env": {"ACCELERATE_USE_CPU": "1"}, "extra_launch": ["--mixed_precision", "no"]} if two else {}),
    )  # fmt: skip
    assert f"step {manifest['global_step']}" in resumed.stdout


# ----------------------------------------------------------------------------------------------------
# Images that are not what they claim


def _png_bomb(path: Path, side: int = 30000) -> None:
    """A 60-byte PNG whose header claims side x side pixels (PIL refuses it as a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_and_truncated_images_are_reported_not_fatal(tmp_path):
    from skinacc.data import resolve_data_config
    from skinacc.data.transforms import ImageTransform

    _png_bomb(tmp_path / "bomb.png")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "bomb.png")
    Image.new("RGB", (64, 64), (200, 50, 50)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:300])
    log = tmp_path / "skipped.jsonl"
    t = ImageTransform(resolve_data_config(None, image_size=32), train=False, skip_log=str(log))
    out = t(
        {
            "image": [str(tmp_path / n) for n in ("ok.jpg", "bomb.png", "cut.jpg")],
            "label": [0, 0, 0],
            "sample_id": [0, 1, 2],
        }
    )
    assert (
        out["pixel_values"][0] is not None
        and out["pixel_values"][1] is None
        and out["pixel_values"][2] is None
    )
    assert "DecompressionBombError" in out["error"][1]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [Path(r["path"]).name for r in logged] == ["bomb.png", "cut.jpg"]


@pytest.mark.slow
def test_predict_and_training_survive_bombs_and_list_them(tmp_path):
    root = tmp_path / "data"
    for c, colour in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (40, 40), tuple(max(0, v - 6 * i) for v in colour)).save(root / c / f"{i}.jpg")
    _png_bomb(root / "a" / "bomb.png")
    good = (root / "b" / "0.jpg").read_bytes()
    (root / "b" / "cut.jpg").write_bytes(good[: len(good) // 3])
    out = tmp_path / "run"
    run_recipe(
        "train.py",
        ["--data_dir", str(root), "--model", "test_efficientnet", "--no_pretrained", "--image_size", "32",
         "--batch_size", "4", "--num_workers", "0", "--epochs", "1", "--report_to", "none",
         "--verify_images", "none", "--output_dir", str(out), "--val_size", "0.2", "--test_size", "0.2"],
    )  # fmt: skip
    report = json.loads((out / "data_report.json").read_text())
    listed = {Path(b["path"]).name: b["reason"] for b in report["bad_files"]}
    # Whichever split they landed in, each was read once (train, validation or test) and reported.
    assert "bomb.png" in listed and "DecompressionBombError" in listed["bomb.png"]
    assert "cut.jpg" in listed
    preds = tmp_path / "preds.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "predict.py"), "--model", str(out), "--inputs", str(root), "--output", str(preds)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    res = {str(Path(r["path"]).relative_to(root)): r for r in json.loads(preds.read_text())}
    assert len(res) == 26 and "DecompressionBombError" in res["a/bomb.png"]["error"]
    assert "could not decode" in res["b/cut.jpg"]["error"] and "top_k" in res["b/0.jpg"]


# ----------------------------------------------------------------------------------------------------
# Launch and client conventions


@pytest.mark.slow
def test_quiet_launch_shows_only_the_message(tmp_path):
    proc = run_recipe(
        "train.py", ["--lr", "-1", "--output_dir", str(tmp_path)], check=False, extra_launch=["-q"]
    )
    assert proc.returncode != 0 and "error:" in proc.stderr and "--lr=-1.0" in proc.stderr
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr
    assert "had defaults used instead" not in proc.stderr, "no accelerate warning on the documented path"
