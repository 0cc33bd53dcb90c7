"""More than one machine, proven on one host: two "machines" (two `accelerate launch --num_machines 2
--machine_rank 0|1 --main_process_ip 127.0.0.1` started by the shipped SLURM node script) give the
same run as one machine with two processes: same history and weights, each image evaluated once,
every file written once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from skinacc.checkpoint import list_checkpoints

from .conftest import ACCELERATE, REPO, TINY, run_two_process

pytestmark = pytest.mark.slow

NODE = REPO / "recipes" / "slurm" / "launch_node.sh"
ARGS = [*TINY, "--synthetic_num_classes", "3", "--epochs", "2", "--checkpoint_every_n_steps", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _history(run: Path) -> list[dict]:
    drop = ("images_per_sec", "data_wait_pct", "step_time_ms", "peak_mem_mb", "epoch_seconds")
    return [
        {k: v for k, v in r.items() if k not in drop} for r in json.loads((run / "history.json").read_text())
    ]


def test_slurm_scripts_parse():
    for script in ("launch_node.sh", "train_multinode.sbatch"):
        subprocess.run(["bash", "-n", str(REPO / "recipes" / "slurm" / script)], check=True)
    proc = subprocess.run(["bash", str(NODE), "recipes/train.py"], cwd=REPO, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})  # fmt: skip
    assert proc.returncode != 0 and "runs under srun" in proc.stderr


def test_two_machines_equal_one_machine_with_two_processes(tmp_path):
    one = tmp_path / "one_machine"
    run_two_process("train.py", [*ARGS, "--output_dir", str(one)])

    two = tmp_path / "two_machines"  # one folder both "machines" see, as on shared storage
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "SLURM_NODEID": str(rank),
            "SLURM_JOB_NUM_NODES": "2",
            "PROCESSES_PER_NODE": "1",
            "MAIN_PROCESS_IP": "127.0.0.1",
            "MAIN_PROCESS_PORT": str(port),
            "ACCELERATE_CONFIG": "accelerate_configs/cpu_2proc.yaml",
            "ACCELERATE_USE_CPU": "1",
            "LAUNCH_ARGS": "--mixed_precision no --num_cpu_threads_per_process 1",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(ACCELERATE).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's accelerate
        }
        procs.append(
            subprocess.Popen(
                ["bash", str(NODE), str(REPO / "recipes" / "train.py"), *ARGS, "--output_dir", str(two)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(o[-3000:] for o in outs)

    cfg = json.loads((two / "run_config.json").read_text())["launch"]
    assert (cfg["num_machines"], cfg["num_processes"]) == (2, 2)
    assert json.loads((one / "run_config.json").read_text())["launch"]["num_machines"] == 1
    # The same run: every epoch's figures, the last checkpoint, the best model, the test metrics.
    assert _history(two) == _history(one)
    for pick in (lambda r: list_checkpoints(r / "checkpoints")[-1] / "model.safetensors",
                 lambda r: r / "best" / "model.safetensors"):  # fmt: skip
        a, b = load_file(str(pick(one))), load_file(str(pick(two)))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    m1 = json.loads((one / "eval_test" / "metrics.json").read_text())
    m2 = json.loads((two / "eval_test" / "metrics.json").read_text())
    n_test = json.loads((two / "data_report.json").read_text())["split_sizes"]["test"]
    assert m1["num_samples"] == m2["num_samples"] == n_test, "each test image once"
    assert m1["accuracy"] == m2["accuracy"] and m1["roc_auc_macro"] == m2["roc_auc_macro"]
    n_val = json.loads((two / "data_report.json").read_text())["split_sizes"]["validation"]
    assert all(r["val_images"] == n_val for r in _history(two))
    # Written once: rank 0 writes the shared files, each rank its own RNG state, nothing twice.
    for ck in list_checkpoints(two / "checkpoints"):
        names = sorted(p.name for p in ck.iterdir())
        assert names == sorted(p.name for p in (one / "checkpoints" / ck.name).iterdir())
        assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors"} <= set(names)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    printed = [o.count("epoch 2/2") for o in outs]
    assert printed == [1, 0], "only the main process of the main machine reports"
