"""Every figure skinacc draws, from plain data (lists, dicts, arrays), never from models or loaders.

Figures are matplotlib PNGs meant to be read at a glance: a title, labelled axes, class names that
do not overlap (long names are wrapped, many classes get a taller figure). Redrawing every figure of a
run folder from its files: :func:`skinacc.plots.redraw.redraw_run`.
"""

from skinacc.plots.benchmarks import (
    plot_loader_benchmark,
    plot_profile,
    plot_run_comparison,
    plot_scaling,
    plot_throughput_benchmark,
)
from skinacc.plots.common import plot_bars, save
from skinacc.plots.evaluation import (
    EVAL_PLOTS,
    plot_confusion_matrix,
    plot_evaluation,
    plot_image_grid,
    plot_per_class,
    plot_reliability,
    plot_roc_curves,
)
from skinacc.plots.training import plot_training_curves

__all__ = [
    "EVAL_PLOTS",
    "plot_bars",
    "plot_confusion_matrix",
    "plot_evaluation",
    "plot_image_grid",
    "plot_loader_benchmark",
    "plot_per_class",
    "plot_profile",
    "plot_reliability",
    "plot_roc_curves",
    "plot_run_comparison",
    "plot_scaling",
    "plot_throughput_benchmark",
    "plot_training_curves",
    "save",
]
