"""skin_metrics: an offline `evaluate` metric for skin-lesion classifiers.

Load it from its path (no Hub access needed)::

    import evaluate
    from skinacc.metrics import SKIN_METRICS_PATH
    metric = evaluate.load(SKIN_METRICS_PATH)
    metric.add_batch(predictions=probs, references=labels)   # probs: (n, C) softmax outputs
    results = metric.compute(class_names=["melanoma", "nevus", ...])

Computes accuracy, balanced accuracy, top-k accuracy, macro and weighted F1, per-class precision /
recall / F1 / support / ROC AUC, one-vs-rest ROC AUC (micro and macro), the confusion matrix and the
expected calibration error.
"""

import datasets
import evaluate

from skinacc.metrics.functional import compute_all

_CITATION = """\
@software{skinacc,
  title = {skinacc: skin-disease image classification at multi-GPU scale},
  year = {2026}
}
"""

_DESCRIPTION = __doc__

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): class probabilities per sample (rows sum to 1).
    references (list of int): true class ids.
    class_names (list of str, optional): names for per-class results.
    top_k (list of int, optional): k values for top-k accuracy, default (3, 5).
    n_bins (int, optional): bins of the expected calibration error, default 15.
Returns:
    dict with accuracy, balanced_accuracy, top_k_accuracy entries, macro_f1, weighted_f1, roc_auc_micro,
    roc_auc_macro, ece, num_samples, per_class and confusion_matrix.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SkinMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, class_names=None, top_k=(3, 5), n_bins=15):
        return compute_all(
            references, predictions, class_names=class_names, top_k=tuple(top_k), n_bins=n_bins
        )
