"""Metrics: pure functions (``functional``) and an offline ``evaluate`` module (``SKIN_METRICS_PATH``)."""

from pathlib import Path

from skinacc.metrics.functional import check_inputs, compute_all, reliability_bins, roc_curve

#: Path for ``evaluate.load``: works offline, unlike ``evaluate.load("accuracy")`` which needs the Hub.
SKIN_METRICS_PATH = str(Path(__file__).parent / "skin_metrics" / "skin_metrics.py")


def load_skin_metrics(**kwargs):
    """``evaluate.load`` of skinacc's metric module from its path (no network)."""
    import evaluate

    return evaluate.load(SKIN_METRICS_PATH, **kwargs)


__all__ = [
    "SKIN_METRICS_PATH",
    "check_inputs",
    "compute_all",
    "load_skin_metrics",
    "reliability_bins",
    "roc_curve",
]
