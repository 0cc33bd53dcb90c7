"""What careful users hit: tampered checkpoints, reused and shared output folders, signals, bad images,
and the conventions other clients expect (issue #11)."""

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from skinacc.checkpoint import Checkpointer, CheckpointError, list_checkpoints
from skinacc.rundir import (
    OutputDirError,
    RunLock,
    atomic_write,
    claim_output_dir,
    output_dir_problem,
    write_text,
)

from .conftest import ACCELERATE, REPO, TINY, cli

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


def test_an_interrupted_write_keeps_the_previous_file_whole(tmp_path):
    path = tmp_path / "sub" / "predictions.csv"
    write_text(path, "path,true\na.jpg,mel\n")
    with pytest.raises(RuntimeError, match="disk"), atomic_write(path, newline="") as f:
        f.write("path,true\nb.jpg,")
        raise RuntimeError("disk full half-way")
    assert path.read_text() == "path,true\na.jpg,mel\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.csv"]  # no temporary left behind
    with atomic_write(path, newline="") as f:
        f.write("path,true\nb.jpg,nv\n")
    assert path.read_text() == "path,true\nb.jpg,nv\n"


def test_a_figure_that_fails_to_draw_keeps_the_previous_png(tmp_path):
    import matplotlib.pyplot as plt

    from skinacc.plots.common import save

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png = save(fig, tmp_path / "curves.png")
    before = png.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = plt.subplots()
    ax.set_title("$\\notacommand$")  # mathtext fails only when the figure is drawn
    with pytest.raises(ValueError):
        save(fig, png)
    assert png.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    assert not plt.get_fignums(), "the failed figure is closed too"


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


def test_fresh_run_into_used_dir_and_overwrite_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--output_dir", str(out), "--eval_test", "false"]
    cli("train", args)
    first = list_checkpoints(out / "checkpoints")
    again = cli("train", args, check=False)
    assert again.returncode == 2 and "already holds a training run" in again.stderr
    assert list_checkpoints(out / "checkpoints") == first, "nothing touched"
    cli("train", [*args, "--overwrite_output_dir", "--seed", "3"])
    manifest = json.loads((list_checkpoints(out / "checkpoints")[-1] / "skinacc_checkpoint.json").read_text())
    assert manifest["config"]["train"]["seed"] == 3 and len(list_checkpoints(out / "checkpoints")) == 1
    assert not (out / "config.json").exists() and (out / "run_config.yaml").is_file()
    bad = cli("train", [*args, "--resume_from_checkpoint", "latest", "--lr", "0.5"], check=False)
    assert bad.returncode == 2 and "--lr=0.5 (the checkpoint's run has 0.001)" in bad.stderr
    under_file = cli("train", [*TINY, "--output_dir", str(out / "history.json" / "x")], check=False)
    assert under_file.returncode == 2 and "which is a file" in under_file.stderr
    assert "Traceback" not in under_file.stderr and "160 images" not in under_file.stdout, (
        "fails before set-up"
    )


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
    cli(
        "train",
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
    cli("predict", ["--model", str(out), "--inputs", str(root), "--output", str(preds)])
    res = {str(Path(r["path"]).relative_to(root)): r for r in json.loads(preds.read_text())}
    assert len(res) == 26 and "DecompressionBombError" in res["a/bomb.png"]["error"]
    assert "could not decode" in res["b/cut.jpg"]["error"] and "top_k" in res["b/0.jpg"]


# ----------------------------------------------------------------------------------------------------
# Launch and client conventions


@pytest.mark.slow
@pytest.mark.parametrize("how", ["recipe", "console_script"])
def test_quiet_launch_shows_only_the_message(tmp_path, how):
    """The launch as documented, of the recipe and of the installed console script (`-m skinacc`)."""
    target = [str(REPO / "recipes" / "train.py")] if how == "recipe" else ["-m", "skinacc", "train"]
    cmd = [ACCELERATE, "launch", "-q", "--config_file", str(REPO / "accelerate_configs" / "cpu.yaml")]
    cmd += ["--num_cpu_threads_per_process", "1", *target, "--lr", "-1", "--output_dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "error:" in proc.stderr and "--lr=-1.0" in proc.stderr
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr
    assert "had defaults used instead" not in proc.stderr, "no accelerate warning on the documented path"


# ----------------------------------------------------------------------------------------------------
# Conventions users bring (issue #24)

WANDB_MODE_OF_THIS_PROCESS = "from skinacc.tracking import prepare_wandb; print(prepare_wandb('wandb'))"


@pytest.mark.parametrize("where", ["netrc_self_hosted", "home_netrc", "none"])
def test_wandb_credentials_are_asked_of_wandb(tmp_path, where):
    """A key stored by `wandb login` in $NETRC for a self-hosted server (WANDB_BASE_URL), or in ~/.netrc
    for the public one, means online; the old check only knew WANDB_API_KEY and api.wandb.ai's netrc."""
    import subprocess
    import sys

    key = "k" * 40
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NETRC"))}
    # No prompt and no server round trip: WANDB_SILENT skips the "logged in as" lookup.
    env |= {"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "WANDB_SILENT": "true"}
    if where == "netrc_self_hosted":
        (tmp_path / "auth").write_text(f"machine wandb.example.org\n  login user\n  password {key}\n")
        env |= {"NETRC": str(tmp_path / "auth"), "WANDB_BASE_URL": "https://wandb.example.org"}
    elif where == "home_netrc":
        (tmp_path / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
    for f in tmp_path.glob("*netrc*"):
        f.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-c", WANDB_MODE_OF_THIS_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    want = "offline" if where == "none" else "online"
    assert proc.stdout.strip().splitlines()[-1] == want, proc.stdout + proc.stderr


ONE_RANK = """
import logging, sys, warnings
from skinacc.console import setup_logging
setup_logging(is_main_process=sys.argv[1] == "main")
logging.getLogger("skinacc.x").warning("a skinacc warning")
warnings.warn("a library warning")
logging.getLogger("skinacc.x").error("an error")
"""


def test_warnings_print_once_per_job_not_once_per_rank():
    def run(rank: str) -> str:
        proc = subprocess.run([sys.executable, "-c", ONE_RANK, rank], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    main, other = run("main"), run("other")
    assert "a skinacc warning" in main and "a library warning" in main and "an error" in main
    assert "a skinacc warning" not in other and "a library warning" not in other and "an error" in other


def test_the_tracker_notice_comes_from_the_main_process_only(monkeypatch):
    """prepare_wandb ran on every rank before the accelerator existed: one 'logs OFFLINE' per GPU."""
    from types import SimpleNamespace

    import skinacc.tracking as tracking

    calls = []
    monkeypatch.setattr(tracking, "prepare_wandb", lambda report_to: calls.append(report_to))
    log_args = SimpleNamespace(report_to="wandb", run_name=None, run_group=None, tags=None, project="p")
    for main in (False, True):
        acc = SimpleNamespace(is_main_process=main, init_trackers=lambda *a, **k: None)
        tracking.start_tracking(acc, log_args, {}, "out", "train")
    assert calls == ["wandb"]


def test_tqdm_disable_is_honoured(capsys, monkeypatch):
    """skinacc's bars passed disable= explicitly (to show them on the main process only), which beat
    tqdm's own TQDM_DISABLE."""
    from accelerate import Accelerator

    from skinacc.data import resolve_data_config
    from skinacc.evaluation import evaluate
    from skinacc.predictor import Predictor

    acc = Accelerator(cpu=True)
    cfg = resolve_data_config(None, image_size=8)
    batches = [
        {"pixel_values": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "labels": torch.tensor([0, 1]), "sample_id": torch.tensor([2 * i, 2 * i + 1])}
        for i in range(3)
    ]  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))

    def run() -> str:
        capsys.readouterr()
        evaluate(acc, Predictor(model, cfg, device=acc.device), batches, desc="bar-under-test")
        return capsys.readouterr().err

    assert "bar-under-test" in run()
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert "bar-under-test" not in run()
    from skinacc.console import disable_progress_bars

    for var in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(var, raising=False)  # put back as they were when the test ends
    disable_progress_bars()  # what --disable_tqdm does
    assert os.environ["TQDM_DISABLE"] == "1" and "bar-under-test" not in run()


PIL_LIMIT = """
import PIL.Image
before = PIL.Image.MAX_IMAGE_PIXELS
import skinacc, skinacc.data, skinacc.demo, skinacc.inference, skinacc.data.images
assert PIL.Image.MAX_IMAGE_PIXELS == before, (before, PIL.Image.MAX_IMAGE_PIXELS)
print(before)
"""


def test_importing_skinacc_leaves_pils_pixel_limit_alone(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PIL_LIMIT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import warnings

    from skinacc.data.images import MAX_IMAGE_PIXELS, open_image

    big = tmp_path / "big.png"  # 13,000 x 13,000: over PIL's default (89 MP), under skinacc's 200 MP
    _png_bomb(big, side=13_000)
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert open_image(big).size == (13_000, 13_000), "skinacc's own reads use its own limit"
        with pytest.raises(Image.DecompressionBombWarning):
            Image.open(big)  # everyone else keeps PIL's
    assert before == Image.MAX_IMAGE_PIXELS and MAX_IMAGE_PIXELS == 200_000_000
    _png_bomb(tmp_path / "huge.png")  # 900 MP: refused by skinacc too
    with pytest.raises(Image.DecompressionBombError):
        open_image(tmp_path / "huge.png")


def test_summary_reports_the_models_epoch_and_the_best_epoch_each_with_its_value():
    from skinacc.optim import selection_summary
    from skinacc.tracking import format_epoch_line

    hist = [
        {"epoch": e, "val_balanced_accuracy": v, "is_best": b}
        for e, v, b in ((1, 0.50, True), (2, 0.63, True), (3, 0.58, False))
    ]
    last = selection_summary(hist, "balanced_accuracy", "last", best_epoch=2)
    assert last == {
        "model_epoch": 3,
        "model_balanced_accuracy": 0.58,
        "best_epoch": 2,
        "best_balanced_accuracy": 0.63,
    }
    best = selection_summary(hist, "balanced_accuracy", "best", best_epoch=2)
    assert best["model_epoch"] == best["best_epoch"] == 2 and best["model_balanced_accuracy"] == 0.63
    final = selection_summary([{"epoch": 1}, {"epoch": 2}], "val_loss", "best", best_epoch=None)
    assert final == {"model_epoch": 2, "model_val_loss": None, "best_epoch": None, "best_val_loss": None}
    line = dict.fromkeys(("train_loss", "train_accuracy", "lr", "images_per_sec", "data_wait_pct"), 0.0)
    line |= {"epoch": 3, "epoch_seconds": 1.0, "peak_mem_mb": 1.0, "is_model": True}
    assert not format_epoch_line(line | {"is_best": False}, 3).endswith("best"), "kept, not best"
    assert format_epoch_line(line | {"is_best": True}, 3).endswith("| best")


@pytest.mark.slow
def test_a_run_without_credentials_or_mode_logs_offline(tmp_path):
    """The whole path in a fresh process, as `make demo` runs: no WANDB_MODE, no key anywhere. Asking
    wandb for credentials sets up its session, so the offline decision must reach wandb.init itself
    (WANDB_MODE set afterwards was ignored, and the run died asking for an API key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "NETRC"))}
    env |= {"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "NETRC": str(tmp_path / "none")}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "skinacc", "train", *TINY, "--synthetic_num_classes", "3", "--epochs", "1",
         "--eval_test", "false", "--report_to", "wandb", "--output_dir", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logs OFFLINE" in proc.stderr and list((out / "wandb").glob("offline-run-*"))
    assert "will be ignored" not in proc.stderr
