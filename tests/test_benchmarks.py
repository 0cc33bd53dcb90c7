"""Each benchmark recipe runs at tiny size and writes numbers and plots (no speed is asserted)."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from skinacc.data import SyntheticSpec, generate_synthetic_dataset

from .conftest import REPO, command

_COMMAND = {
    "benchmark_dataloading.py": "benchmark-loading",
    "benchmark_throughput.py": "benchmark-throughput",
}


def _run(script: str, args: list[str]):
    """``recipes/<script>`` as the command it is, in this process."""
    return command(_COMMAND[script], args)


def test_benchmark_dataloading_tiny(tmp_path):
    root = generate_synthetic_dataset(
        SyntheticSpec(num_classes=3, images_per_class=24, image_size=96), tmp_path / "c"
    )
    out = tmp_path / "bench"
    _run(
        "benchmark_dataloading.py",
        [
            "--data_dir",
            str(root),
            "--output_dir",
            str(out),
            "--large_size",
            "400",
            "--large_per_class",
            "24",
            "--batch_size",
            "8",
            "--max_images",
            "24",
            "--image_size",
            "64",
            "--repeats",
            "1",
            "--report_to",
            "wandb",
        ],
    )
    data = json.loads((out / "loading.json").read_text())
    rows = {(r["image_set"], r["strategy"]): r for r in data["results"]}
    for s in ("torchvision_imagefolder", "skinacc", "preresized_cache", "manual_split", "single_process"):
        for image_set in ("small", "large"):
            assert rows[(image_set, s)]["images_per_sec"] > 0, (image_set, s)
    assert "skipped" in rows[("small", "gpu_decode")] or rows[("small", "gpu_decode")]["images_per_sec"] > 0
    assert (out / "loading.csv").read_text().count("\n") == len(data["results"]) + 1
    assert Image.open(out / "loading.png").size[0] > 400
    from skinacc.wandb_offline import read_offline_run

    logged = read_offline_run(out / "wandb")
    assert (
        logged["job_type"] == "benchmark_dataloading" and "benchmark_dataloading/results" in logged["summary"]
    )


@pytest.mark.slow
def test_benchmark_throughput_scaling_tiny(tmp_path):
    """Driver mode on CPU: 1 and 2 gloo processes, fp32/bf16, channels-last on/off, train/infer, and end-to-end JPEG."""
    root = generate_synthetic_dataset(
        SyntheticSpec(num_classes=3, images_per_class=30, image_size=96), tmp_path / "c"
    )
    out = tmp_path / "tp"
    _run(
        "benchmark_throughput.py",
        [
            "--launch_processes",
            "1",
            "2",
            "--launch_config",
            "accelerate_configs/cpu_2proc.yaml",
            "--launch_cpu",
            "--model",
            "test_efficientnet",
            "--num_classes",
            "3",
            "--image_size",
            "48",
            "--batch_sizes",
            "4",
            "--precisions",
            "fp32",
            "bf16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--e2e_data_dir",
            str(root),
            "--e2e_batches",
            "3",
            "--e2e_workers",
            "1",
            "--output_dir",
            str(out),
        ],
    )
    data = json.loads((out / "throughput.json").read_text())
    rows = data["results"]
    assert {r["processes"] for r in rows} == {1, 2}
    assert {r["mode"] for r in rows} == {"train", "infer", "train_e2e_jpeg", "infer_e2e_jpeg"}
    assert {r["precision"] for r in rows if r["mode"] == "train"} == {"fp32", "bf16"}
    for r in rows:
        assert r["images_per_sec"] > 0 and r["peak_mem_mb"] > 0 and r["speedup"] > 0, r
    two = [r for r in rows if r["processes"] == 2]
    assert all(r["scaling_efficiency"] == pytest.approx(r["speedup"] / 2) for r in two)
    e2e = [r for r in rows if r["mode"] == "train_e2e_jpeg"]
    assert all(0 <= r["data_wait_pct"] <= 100 and r["channels_last"] for r in e2e)
    # Inference reads the whole folder (90 images, all splits) whole times over, each image once per copy.
    inf = [r for r in rows if r["mode"] == "infer_e2e_jpeg"]
    assert len(inf) == 2 and all(r["images"] % 90 == 0 and r["images"] >= 3 * 4 * r["processes"] for r in inf)
    for png in ("throughput_by_precision.png", "memory_by_precision.png", "scaling.png"):
        assert Image.open(out / png).size[0] > 400, png
    assert (out / "throughput.csv").read_text().count("\n") == len(rows) + 1


@pytest.mark.slow
def test_profile_recipe_two_processes(tmp_path):
    from .conftest import TINY, run_two_process

    out = tmp_path / "prof"
    proc = run_two_process(
        "profile_training.py",
        [
            *TINY,
            "--profile_dir",
            str(out),
            "--warmup_steps",
            "1",
            "--profile_steps",
            "2",
            "--batch_size",
            "8",
            "--report_to",
            "wandb",
        ],
        env={"WANDB_MODE": "offline"},
    )
    assert "launches/step" in proc.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["launch"]["num_processes"] == 2 and s["steps"] == 2
    assert s["operators"] and s["kernels"] and s["kernels_by_launches"] and s["categories"]
    assert "skinacc/data_wait" in s["ranges"] and "skinacc/forward_backward" in s["ranges"]
    assert s["all_reduce_ms"] > 0, "DDP all-reduce is visible"
    assert s["training"]["images_per_sec"] > 0 and 0 <= s["training"]["data_wait_pct"] <= 100
    traces = sorted(out.glob("profile_*.json"))
    assert len(traces) == 2 and "traceEvents" in json.loads(traces[0].read_text())
    for png in ("operator_time.png", "kernel_launches.png", "kernel_mean_duration.png"):
        assert Image.open(out / png).size[0] > 400, png
    from skinacc.wandb_offline import read_offline_run

    logged = read_offline_run(out / "wandb")
    traces = [a for a in logged["artifacts"] if a["type"] == "profile"]
    assert traces and {"profile_0.json", "profile_1.json", "summary.json"} <= set(traces[0]["files"]), (
        "traces logged as a W&B artifact"
    )


@pytest.mark.long
def test_gpu_check_script_smoke(tmp_path):
    """benchmarks/gpu_check.sh at toy sizes on the CPU: every step finishes, results are packed, and the
    targets table is filled from the result files (no speed is asserted)."""
    import os
    import subprocess
    import sys
    import tarfile

    env = {
        **os.environ,
        "SMOKE": "1",
        "OUT": str(tmp_path / "out"),
        "PACK": str(tmp_path / "pack"),
        "SKINACC_CACHE": str(tmp_path / "cache"),
        "PY": sys.executable,
        "BUDGET_S": "3000",  # generous: a busy CPU only makes the rehearsal slower
    }
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=3300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [ln.split("\t") for ln in (tmp_path / "out" / "steps.tsv").read_text().splitlines()]
    assert [s[0] for s in steps] == [
        "jpegs",
        "e2e_bf16",
        "compute",
        "profile",
        "loading",
        "compile",
        "e2e_fp16",
        "e2e_preresized",
        "train_bf16",
        "train_fp16",
    ]
    assert all(s[1] == "0" for s in steps), steps
    # The rehearsal runs the mixed-precision paths too (accelerate autocasts on the CPU).
    for step, prec in (("e2e_bf16", "bf16"), ("e2e_fp16", "fp16"), ("e2e_preresized", "bf16")):
        rows = json.loads((tmp_path / "out" / step / "throughput.json").read_text())["results"]
        assert {r["precision"] for r in rows} == {prec} and len(rows) == 2, (step, rows)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "not measured" not in summary, summary
    for needle in (
        "| training, end to end from the large JPEGs, bf16",
        "| inference end to end from JPEGs, bf16",
        "| data wait",
        "recipes/train.py",
        "| convolution |",
        "| large | skinacc |",
    ):
        assert needle in summary, needle
    with tarfile.open(tmp_path / "pack" / "gpu_check.tgz") as tar:
        names = tar.getnames()
    assert (
        "./summary.md" in names
        and "./e2e_bf16/throughput.json" in names
        and not any(n.endswith(".safetensors") for n in names)
    )


def _summarize(out_dir, check: bool = True):
    import subprocess
    import sys

    script = REPO / "benchmarks" / "summarize_gpu_check.py"
    return subprocess.run(
        [sys.executable, str(script), str(out_dir)], capture_output=True, text=True, check=check
    )


def test_gpu_check_summary_marks_missing_steps(tmp_path):
    """A step that timed out or was skipped shows as not measured, with its status, never as a number."""

    (tmp_path / "steps.tsv").write_text("jpegs\t0\t5\ne2e_bf16\t124\t120\ncompute\tskipped\t0\n")
    out = _summarize(tmp_path).stdout
    assert (
        "not measured (step `e2e_bf16`: exit 124)" in out and "step `compute`: skipped, no budget left" in out
    )
    targets = [
        ln.split(" | ")
        for ln in out.splitlines()
        if ln.startswith(("| training", "| AMP", "| inference", "| data wait"))
    ]
    assert len(targets) == 9 and all(
        t[1].startswith("not measured") and t[2].rstrip(" |") == "-" for t in targets
    ), targets
    # A compute sweep stopped at its limit leaves throughput_1proc.json (written after every variant): used.
    (tmp_path / "throughput").mkdir()
    rows = [
        {
            "mode": "train",
            "precision": p,
            "channels_last": True,
            "compile": False,
            "batch_size": 256,
            "processes": 1,
            "images_per_sec": v,
            "peak_mem_mb": 1.0,
        }
        for p, v in (("fp32", 1000.0), ("bf16", 2100.0))
    ]
    (tmp_path / "throughput" / "throughput_1proc.json").write_text(
        json.dumps(
            {
                "meta": {},
                "results": [
                    *rows,
                    {
                        "mode": "train",
                        "precision": "fp16",
                        "channels_last": True,
                        "compile": False,
                        "batch_size": 256,
                        "error": "OutOfMemoryError: ...",
                    },
                ],
            }
        )
    )
    out = _summarize(tmp_path).stdout
    assert (
        "| AMP bf16 vs FP32 training (batch 256, best layout), >= 1.8x | 2.10x (step `compute`: skipped, no budget left) | yes |"
        in out
    )
    assert (
        "| AMP fp16 vs FP32 training (batch 256, best layout), >= 1.8x | not measured" in out
        and "OutOfMemoryError" in out
    )
    bad = _summarize(tmp_path / "nope", check=False)
    assert bad.returncode != 0 and "OUTPUT_DIR_OF_GPU_CHECK" in bad.stderr


@pytest.mark.slow
def test_app_latency_benchmark_tiny(trained_run, tmp_path):
    """benchmarks/app_latency.py: function and HTTP rows, with and without Grad-CAM."""
    pytest.importorskip("gradio")
    pytest.importorskip("pytorch_grad_cam")
    root = json.loads((trained_run / "data_report.json").read_text())["root"]
    out = tmp_path / "lat"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "app_latency.py"),
            "--model",
            str(trained_run),
            "--images",
            root,
            "--requests",
            "4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "result.json").read_text())["rows"]
    assert {(r["via"], r["explain"]) for r in rows} == {
        (via, e) for via in ("function", "HTTP (gradio_client)") for e in (False, True)
    }
    assert all(r["n"] == 4 and 0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert "| HTTP (gradio_client) | on |" in (out / "summary.md").read_text()


@pytest.mark.data
@pytest.mark.slow
def test_scale_benchmark_tiny(isic8, tmp_path):
    """benchmarks/scale.py end to end at its smallest: links, start-up, shards, both loaders, prediction."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--work", str(tmp_path / "work"), "--out", str(out),
         "--sections", "startup", "shards", "loaders", "predict", "--factors", "1", "--shard_factor", "1",
         "--loader_batches", "2", "--loader_workers", "1", "--predict_images", "100", "--tiny_size", "48",
         "--lite0", str(tmp_path / "no-such-model")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert [r["images"] for r in res["startup"]] == [1646, 1646]
    assert res["shards"]["images"] == 1646 and res["shards"]["images_per_sec"] > 0
    assert {r["loader"] for r in res["loaders"]} == {"streaming", "map-style"}
    assert all(r["images"] == 128 for r in res["loaders"])
    assert res["predict"][0]["images"] == 100 and res["predict"][0]["peak_pss_mb"] > 0
    assert (tmp_path / "work" / "links_x1" / ".complete").is_file()


def test_same_outputs_tells_a_changed_field_from_a_timing_or_a_path(tmp_path):
    """benchmarks/same_outputs.py, the check that a restructuring left a run's files alone."""
    import numpy as np

    for name, (acc, secs) in {"before": (0.5, 1.0), "after": (0.5, 9.0)}.items():
        d = tmp_path / name
        (d / "eval").mkdir(parents=True)
        (d / "eval" / "metrics.json").write_text(
            json.dumps({"accuracy": acc, "seconds": secs, "model": str(d / "best"), "nan": float("nan")})
        )
        (d / "history.csv").write_text(f"epoch,val_loss,epoch_seconds\n1,0.25,{secs}\n")
        np.savez(d / "oof.npz", probs=np.eye(2), path=np.array([str(d / "a.jpg"), str(d / "b.jpg")]))
    script = [sys.executable, str(REPO / "benchmarks" / "same_outputs.py")]
    same = subprocess.run([*script, tmp_path / "before", tmp_path / "after"], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout
    (tmp_path / "after" / "history.csv").write_text("epoch,val_loss,epoch_seconds\n1,0.26,9.0\n")
    (tmp_path / "after" / "extra.png").write_bytes(b"png")
    np.savez(tmp_path / "after" / "oof.npz", probs=np.eye(2) * 0.5, path=np.array(["x", "y"]))
    differ = subprocess.run(
        [*script, tmp_path / "before", tmp_path / "after"], capture_output=True, text=True
    )
    assert differ.returncode == 1
    lines = differ.stdout.splitlines()
    assert "history.csv[0].val_loss: '0.25' vs '0.26'" in lines
    assert "extra.png: only in after" in lines and "oof.npz:probs: arrays differ" in lines
    assert any(line.startswith("oof.npz:path[0]:") for line in lines) and lines[-1].startswith(
        "5 difference(s)"
    )
