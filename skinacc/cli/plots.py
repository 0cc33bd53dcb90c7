"""Regenerate every plot of a run directory from the files it holds (no model, no data needed).

    python recipes/plots.py --run_dir outputs/demo
    skinacc plots --run_dir outputs/demo

Redraws training_curves.png (from history.json), the evaluation plots of every eval_*/ folder (from
its predictions.csv), and benchmark plots (loading.json, throughput.json) found in the folder.
"""

from __future__ import annotations

from pathlib import Path

from skinacc.cli.common import parse_args
from skinacc.config.tools import PlotArguments
from skinacc.plots.redraw import redraw_run


def main(argv: list[str] | None = None) -> list[Path]:
    (args,) = parse_args((PlotArguments,), argv, description=__doc__)
    made = redraw_run(args.run_dir)
    for p in made:
        print(p)
    return made
