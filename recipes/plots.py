"""Regenerate every plot of a run directory from the files it holds (no model, no data needed).

    python recipes/plots.py --run_dir outputs/demo

Redraws training_curves.png (from history.json), the evaluation plots of every eval_*/ folder (from
its predictions.csv), and benchmark plots (loading.json, throughput.json) found in the folder.

This script is ``skinacc plots`` (``python -m skinacc plots``, or ``accelerate launch ... -m skinacc
plots``): it runs :mod:`skinacc.cli.plots`, which parses the flags and calls the library.
"""

import sys
from pathlib import Path

# Off the import path, the folder of this script (it holds evaluate.py, train.py, ...): a script named
# like a package (Hugging Face's evaluate) would shadow it for everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from skinacc.cli import run_command  # noqa: E402

if __name__ == "__main__":
    run_command("plots")
