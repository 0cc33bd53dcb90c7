"""Shared fixtures: offline environment, a private cache, the real ISIC set when present, commands run
in-process (the library as users import it) and, where the launch itself is under test, through
``accelerate launch``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Offline by construction: the Hub and W&B servers are unreachable where the tests run.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# datasets sleeps 5 s after every streamed Parquet iteration ends (a workaround for an Arrow crash when
# a program exits right after a scan; 0.1 s was enough in Arrow's report): 10-15 s per epoch of a
# streamed tiny run, which the tests do not need to wait for.
import datasets.config

datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0.1

REPO = Path(__file__).resolve().parents[1]
ISIC8 = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")

# Tiny, fast defaults for runs: timm's 0.1M-parameter test model on small synthetic images.
TINY = [
    "--model",
    "test_efficientnet",
    "--no_pretrained",
    "--synthetic_num_classes",
    "4",
    "--synthetic_images_per_class",
    "40",
    "--synthetic_image_size",
    "64",
    "--image_size",
    "48",
    "--batch_size",
    "16",
    "--num_workers",
    "0",
    "--report_to",
    "none",
]


@pytest.fixture(scope="session", autouse=True)
def skinacc_cache(tmp_path_factory) -> Path:
    """Every test (and every subprocess) uses one private cache folder."""
    d = tmp_path_factory.mktemp("skinacc-cache")
    os.environ["SKINACC_CACHE"] = str(d)
    return d


@pytest.fixture
def isic8() -> Path:
    if not (ISIC8 / "labels.csv").is_file():
        pytest.skip(f"real data not present at {ISIC8}")
    return ISIC8


def _fresh_process_state() -> None:
    """What a new process would start without: accelerate's process state, wandb's settings singleton
    (it keeps the WANDB_MODE it first read)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


def command(name: str, args: list[str]):
    """Run ``skinacc <name> <args>`` in this process (what ``skinacc.cli`` runs, flags parsed the same
    way) and return what the command returns. A one-line user error raises ``SystemExit(2)``; the process
    state is reset afterwards, so the next command starts as a new process would."""
    import importlib

    from skinacc.cli import COMMANDS

    module = importlib.import_module(f"skinacc.cli.{COMMANDS[name][0]}")
    try:
        return module.main(list(args))
    finally:
        _fresh_process_state()


def train(args: list[str]) -> dict:
    """``skinacc train`` in this process; the run's summary."""
    return command("train", args)


def cli(name: str, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """``skinacc <name> <args>`` in this process as the console script runs it (exit status, one-line
    errors), with its output captured: a ``CompletedProcess``, as a subprocess run would give."""
    import contextlib
    import importlib
    import io

    from skinacc.cli import COMMANDS
    from skinacc.cli.common import call

    module = importlib.import_module(f"skinacc.cli.{COMMANDS[name][0]}")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = call(module.main, list(args))
    finally:
        _fresh_process_state()
    proc = subprocess.CompletedProcess(["skinacc", name, *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"skinacc {name} failed ({code}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_recipe(
    script: str,
    args: list[str],
    config: str = "cpu.yaml",
    env: dict | None = None,
    check: bool = True,
    extra_launch: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``accelerate launch --config_file accelerate_configs/<config> --num_cpu_threads_per_process N
    recipes/<script> <args>``, as the README does (accelerate cannot read the thread count from a config
    file, and warns when it is not given). For tests of the launch itself (processes, signals, exit codes)."""
    processes = 2 if "2proc" in config else 1
    cmd = [
        ACCELERATE,
        "launch",
        "--config_file",
        str(REPO / "accelerate_configs" / config),
        "--num_cpu_threads_per_process",
        str(max(1, (os.cpu_count() or 1) // processes)),
        *(extra_launch or []),
        str(REPO / "recipes" / script),
        *args,
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def run_two_process(
    script: str, args: list[str], env: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    """Two real gloo ranks on the CPU (see accelerate_configs/cpu_2proc.yaml for why it is done so)."""
    return run_recipe(
        script,
        args,
        config="cpu_2proc.yaml",
        env={"ACCELERATE_USE_CPU": "1", **(env or {})},
        extra_launch=["--mixed_precision", "no"],
        **kw,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, skinacc_cache) -> Path:
    """One tiny training run shared by the evaluation, tracking and publishing tests (in-process, with
    an offline W&B run)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train(
        [
            *TINY,
            "--synthetic_num_classes",
            "3",
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--output_dir",
            str(out),
            "--report_to",
            "wandb",
            "--log_every_n_steps",
            "2",
        ]
    )
    return out
