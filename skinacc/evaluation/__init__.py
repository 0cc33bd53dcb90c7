"""Evaluation, one way: the prediction loop (:mod:`.loop`) gathers a model's predictions into a
:class:`Predictions` record (:mod:`.predictions`), and :func:`report` (:mod:`.report`) writes, prints
and logs any such record: training's final test, ``evaluate``, a fold's held-out predictions and a
cross-validation's out-of-fold set alike."""

from skinacc.evaluation.loop import (
    EvalOutput,
    PredictionLog,
    assert_ranks_agree,
    calibrate_and_test,
    evaluate,
    stress_test,
)
from skinacc.evaluation.predictions import Predictions, read_predictions_npz
from skinacc.evaluation.report import HEADLINE, Report, clinical_scalars, report

__all__ = [
    "HEADLINE",
    "EvalOutput",
    "PredictionLog",
    "Predictions",
    "Report",
    "assert_ranks_agree",
    "calibrate_and_test",
    "clinical_scalars",
    "evaluate",
    "read_predictions_npz",
    "report",
    "stress_test",
]
