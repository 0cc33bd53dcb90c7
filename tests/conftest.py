"""Shared fixtures: offline environment, a private cache, the real ISIC set when present, recipe runner."""

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

REPO = Path(__file__).resolve().parents[1]
ISIC8 = REPO.parent / "shared" / "data" / "isic8-dermoscopy"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")

# Tiny, fast defaults for recipe runs: timm's 0.1M-parameter test model on small synthetic images.
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
    """Every test (and every recipe subprocess) uses one private cache folder."""
    d = tmp_path_factory.mktemp("skinacc-cache")
    os.environ["SKINACC_CACHE"] = str(d)
    return d


@pytest.fixture
def isic8() -> Path:
    if not (ISIC8 / "labels.csv").is_file():
        pytest.skip(f"real data not present at {ISIC8}")
    return ISIC8


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
    file, and warns when it is not given)."""
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
    """One tiny training run shared by the evaluation, tracking and publishing tests."""
    out = tmp_path_factory.mktemp("trained") / "run"
    run_recipe(
        "train.py",
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
        ],
        env={"WANDB_MODE": "offline"},
    )
    return out
