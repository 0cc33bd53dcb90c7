"""Runs as library objects: :class:`TrainingRun` (a training run's whole lifecycle) and
:func:`evaluate_model` (a trained model on a split or an outside folder). The command line
(``skinacc train``, ``skinacc evaluate``, ``recipes/*.py``) only parses flags and calls these."""

from skinacc.run.evaluation import evaluate_model
from skinacc.run.setup import TrainingSetup, build_training
from skinacc.run.training import TrainingRun, make_accelerator

__all__ = ["TrainingRun", "TrainingSetup", "build_training", "evaluate_model", "make_accelerator"]
