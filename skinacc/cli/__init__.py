"""The command line: ``skinacc <command> [options]``, one module per command (parse flags, call the
library, print), and the only part of skinacc that reads ``sys.argv``.

    skinacc --help                                    # the commands
    skinacc train --config recipes/configs/demo.yaml  # one process, as it is
    accelerate launch --config_file accelerate_configs/4gpu_fp16.yaml -m skinacc train --config seed_b3.yaml
    accelerate launch --config_file ... --no_python skinacc train ...   # the console script itself

``recipes/<command>.py`` are the same commands as scripts (``accelerate launch recipes/train.py ...``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main", "run_command"]

#: Command name -> (module under skinacc.cli, one line of what it does).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a classifier (accelerate launch for DDP and mixed precision)"),
    "evaluate": ("evaluate", "evaluate a trained model on a split or any labelled folder"),
    "predict": ("predict", "top-k classes for image files, at any scale"),
    "app": ("app", "the web demo (Gradio page with Grad-CAM)"),
    "audit": ("audit", "duplicates, suspect labels and image quality of a dataset"),
    "prepare-shards": ("prepare_shards", "pre-resized Parquet shards for --streaming"),
    "ensemble": ("ensemble", "a cross-validation's fold models as one ensemble; weight soups"),
    "export-onnx": ("export_onnx", "export a trained model to ONNX, checked with onnxruntime"),
    "push-to-hub": ("push_to_hub", "publish a trained model to the Hugging Face Hub"),
    "plots": ("plots", "redraw every plot of a run folder"),
    "compare-runs": ("compare_runs", "runs side by side: accuracy, speed, scaling"),
    "profile": ("profile", "torch.profiler over a few real training steps"),
    "benchmark-throughput": ("benchmark_throughput", "throughput and memory by precision, layout, processes"),
    "benchmark-loading": ("benchmark_loading", "data-loading strategies side by side"),
}


def run_command(name: str, argv: Sequence[str] | None = None) -> None:
    """Run command ``name`` with ``argv`` (default ``sys.argv[1:]``); exits as the command does."""
    from skinacc.cli.common import run

    module = importlib.import_module(f"skinacc.cli.{COMMANDS[name][0]}")
    run(module.main, argv)


def main(argv: Sequence[str] | None = None) -> None:
    """``skinacc <command> [options]`` (the console script and ``python -m skinacc``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {n:<{width}}  {what}" for n, (_, what) in COMMANDS.items()]
        print("usage: skinacc <command> [options]   (skinacc <command> --help for its options)\n")
        print("commands:\n" + "\n".join(lines))
        raise SystemExit(0 if argv else 2)
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        close = [n for n in COMMANDS if n.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"skinacc: unknown command {argv[0]!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv[0] = f"skinacc {name}"  # the name --help and error messages show
    run_command(name, argv[1:])
