"""skinacc: train skin-disease image classifiers at multi-GPU scale with Accelerate, timm and datasets.

The objects most programs need, importable from here (loaded on first use, so ``import skinacc`` stays
light for the command line)::

    from skinacc import TrainingRun, build_training, evaluate_model, load_model, Predictor, parse_config
"""

from importlib import import_module
from typing import Any

# The one place the version is written: pyproject.toml reads it (``[tool.setuptools.dynamic]``).
__version__ = "0.2.0.dev0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "TrainingRun": "skinacc.run.training",
    "build_training": "skinacc.run.setup",
    "evaluate_model": "skinacc.run.evaluation",
    "load_model": "skinacc.artifact",
    "Predictor": "skinacc.predictor",
    "parse_config": "skinacc.config.parse",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'skinacc' has no attribute {name!r}")
