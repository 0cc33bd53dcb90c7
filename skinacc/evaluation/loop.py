"""The prediction loop: evaluation gathered exactly once over processes, results written as they come,
and the end of a run (calibration on validation, then the test).

Every image counts once: outputs are gathered with ``gather_for_metrics`` (and a streaming loader's
padding rows dropped), so one and two processes give the same numbers. Probabilities come from the one
inference path, :class:`skinacc.predictor.Predictor`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from skinacc.calibration import calibrate as calibrate_temperature
from skinacc.calibration import probs_from_logits, view_disagreement_of
from skinacc.console import progress_bar
from skinacc.predictor import Predictor

__all__ = [
    "EvalOutput",
    "PredictionLog",
    "assert_ranks_agree",
    "calibrate_and_test",
    "evaluate",
    "stress_test",
]


@dataclass
class EvalOutput:
    """Everything an evaluation produced, gathered over processes (each sample exactly once).

    ``logits`` holds every test-time-augmentation view, ``(N, V, C)``; ``probs`` averages the views'
    softmax at ``temperature`` (set it to apply a calibration; see :mod:`skinacc.calibration`).
    """

    logits: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray
    seconds: float
    images_per_sec: float
    temperature: float = 1.0

    @property
    def probs(self) -> np.ndarray:
        if not len(self.labels):
            return np.zeros((0, self.logits.shape[-1] if self.logits.ndim == 3 else 0))
        return probs_from_logits(self.logits, self.temperature)

    @property
    def losses(self) -> np.ndarray:
        """Per-sample negative log-likelihood of the (view-averaged, tempered) probabilities."""
        p = self.probs
        return -np.log(np.clip(p[np.arange(len(self.labels)), self.labels], 1e-12, None))

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.labels) else float("nan")

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(1) == self.labels).mean()) if len(self.labels) else float("nan")

    def headline_metrics(self, class_names: list[str]) -> dict[str, float]:
        """``loss``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_macro`` and ``ece``
        (what training logs and selects on every epoch)."""
        from skinacc.metrics import compute_all
        from skinacc.metrics.report import HEADLINE

        m = compute_all(self.labels, self.probs, class_names, top_k=())
        return {"loss": self.loss} | {k: m[k] for k in HEADLINE} | {"images": len(self.labels)}

    @property
    def disagreement(self) -> np.ndarray | None:
        """Per image, the share of test-time-augmentation views whose top class differs from the
        averaged prediction's (None with one view): the ``tta_disagreement`` uncertainty."""
        return view_disagreement_of(self.logits, self.temperature)

    def uncalibrated_ece(self) -> float:
        """ECE of the probabilities at temperature 1 (what a calibration started from)."""
        from skinacc.metrics.functional import expected_calibration_error

        return expected_calibration_error(self.labels, probs_from_logits(self.logits))


@torch.no_grad()
def evaluate(
    accelerator,
    predictor: Predictor,
    loader,
    *,
    desc: str = "eval",
    on_batch: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    keep: bool = True,
    check_stop: Callable[[int], None] | None = None,
) -> EvalOutput:
    """Predict a whole split; outputs are gathered so every sample counts exactly once.

    Args:
        accelerator: The ``Accelerator``.
        predictor: The model (prepared, or an unprepared copy on the device such as an EMA's ``module``)
            with its TTA and temperature; give it ``autocast=accelerator.autocast`` for mixed precision.
        loader: Prepared evaluation loader (not shuffled).
        desc: Progress-bar label.
        on_batch: Called on every process with each gathered batch, ``(logits (B, views, classes),
            labels, sample_ids)`` as numpy, padding rows removed (e.g. to write results as they come).
        keep: Keep the outputs for the returned :class:`EvalOutput`; ``False`` keeps memory flat over
            any number of images (the output then holds only the count and the time).
        check_stop: Called on every process after each batch with the number of batches done (e.g.
            :meth:`skinacc.stopping.StopRequest.checker`); it raises to abandon the evaluation when a
            stop was requested.

    Returns:
        An :class:`EvalOutput` identical on every process, with every view's logits.
    """
    predictor.model.eval()
    logits_all, labels, ids = [], [], []
    seen = 0
    t0 = time.perf_counter()
    bar = progress_bar(loader, desc=desc, show=accelerator.is_main_process, leave=False, dynamic_ncols=True)
    with bar:  # closed on a stop too, so the run's message starts on a clean line
        for i, batch in enumerate(bar, 1):
            z = predictor.logits(batch["pixel_values"])  # (B, views, classes)
            gz, gy, gi = accelerator.gather_for_metrics((z, batch["labels"], batch["sample_id"]))
            if on_batch is not None:
                real = gi >= 0
                seen += int(real.sum())
                on_batch(gz[real].float().cpu().numpy(), gy[real].cpu().numpy(), gi[real].cpu().numpy())
            if keep:
                # Kept on the device until the split is done: a copy to the host per batch would make the
                # loop wait for every batch's GPU work before queueing the next one.
                logits_all.append(gz)
                labels.append(gy)
                ids.append(gi)
            if check_stop is not None:
                check_stop(i)
    cat = lambda xs, dt: torch.cat(xs).cpu().numpy().astype(dt) if xs else np.zeros((0,), dtype=dt)  # noqa: E731
    seconds = time.perf_counter() - t0
    sample_ids = cat(ids, np.int64)
    # Padding rows (sample_id -1: a streaming loader fills every rank's batches to one shape) are dropped.
    real = sample_ids >= 0
    out = EvalOutput(
        logits=cat(logits_all, np.float32)[real] if logits_all else np.zeros((0, 1, 0), np.float32),
        labels=cat(labels, np.int64)[real],
        sample_ids=sample_ids[real],
        seconds=seconds,
        images_per_sec=0.0,
        temperature=predictor.temperature,
    )
    n = len(out.labels) if keep or on_batch is None else seen
    out.images_per_sec = n / seconds if seconds > 0 else 0.0
    return out


class PredictionLog:
    """Evaluation results appended batch by batch to a binary file of fixed-size records
    (``sample_id`` int64, ``label`` int64, ``probs`` float32 x classes, ``disagreement`` float32: the
    share of TTA views disagreeing with the average), so that an evaluation of any size keeps flat memory
    and one that stopped continues where its file ends.

    A JSON sidecar (``<path>.json``) records what produced the records (model, split, TTA,
    temperature); :meth:`start` refuses to continue records made otherwise.
    """

    def __init__(self, path, num_classes: int):
        from pathlib import Path

        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.dtype = np.dtype(
            [
                ("sample_id", "<i8"),
                ("label", "<i8"),
                ("probs", "<f4", (num_classes,)),
                ("disagreement", "<f4"),
            ]
        )

    def start(self, settings: dict[str, Any], resume: bool) -> np.ndarray:
        """Begin (truncating any old records) or, with ``resume``, continue: returns the sample ids
        already done (a record cut by a crash is dropped).

        Raises:
            ValueError: ``resume`` and the records were made with other settings.
        """
        import json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.is_file():
            old = json.loads(self.meta_path.read_text()) if self.meta_path.is_file() else {}
            if old != settings:
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise ValueError(
                    f"--resume: {self.path} holds predictions made with other settings ({', '.join(diff)}); "
                    "evaluate again without --resume (or into another --output_dir)"
                )
            whole = self.path.stat().st_size // self.dtype.itemsize * self.dtype.itemsize
            with self.path.open("r+b") as f:
                f.truncate(whole)
            return self.read()[0]
        self.meta_path.write_text(json.dumps(settings))
        self.path.write_bytes(b"")
        return np.zeros(0, np.int64)

    def append(
        self,
        sample_ids: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
        disagreement: np.ndarray | None = None,
    ) -> None:
        rec = np.empty(len(sample_ids), self.dtype)
        rec["sample_id"], rec["label"], rec["probs"] = sample_ids, labels, probs
        rec["disagreement"] = 0.0 if disagreement is None else disagreement
        with self.path.open("ab") as f:
            f.write(rec.tobytes())

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sample_ids, labels, probs)`` of every whole record."""
        rec = self.records()
        return rec["sample_id"].copy(), rec["label"].copy(), rec["probs"].astype(np.float64)

    def records(self) -> np.ndarray:
        """Every whole record (a structured array with the fields above)."""
        return np.fromfile(self.path, dtype=self.dtype) if self.path.is_file() else np.zeros(0, self.dtype)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def calibrate_and_test(
    accelerator,
    predictor: Predictor,
    *,
    val_loader=None,
    test_loader=None,
    stop=None,
    calibrate: bool = True,
) -> tuple[dict[str, float] | None, EvalOutput | None, EvalOutput | None]:
    """The end of a run: evaluate ``val_loader`` (when given) and fit a temperature on it (``calibrate``),
    then evaluate ``test_loader`` (when given) at that temperature, both with the predictor's
    test-time augmentation.

    Args:
        predictor: The run's model at temperature 1, with the TTA of its final test.
        stop: A :class:`skinacc.stopping.StopRequest`: a stop abandons the calibration or the test
            (:class:`skinacc.stopping.TrainingStopped` is raised).
        calibrate: Fit the temperature on validation (else validation is only predicted, e.g. to choose
            decision thresholds on it).

    Returns:
        ``(calibration, validation, test)``: :func:`skinacc.calibration.calibrate`'s figures (or None),
        and the validation and test :class:`EvalOutput` at the final temperature (or None).
    """
    cal = val = None
    checks = (lambda phase: None) if stop is None else stop.checker
    if val_loader is not None:
        desc = "calibrate" if calibrate else "validation"
        val = evaluate(accelerator, predictor, val_loader, desc=desc, check_stop=checks("calibration"))
        if calibrate:
            cal = calibrate_temperature(val.logits, val.labels) | {"images": len(val.labels)}
            predictor = copy.copy(predictor)
            predictor.temperature = val.temperature = cal["temperature"]
    test = None
    if test_loader is not None:
        test = evaluate(accelerator, predictor, test_loader, desc="test", check_stop=checks("final test"))
    return cal, val, test


@torch.no_grad()
def stress_test(
    accelerator, predictor: Predictor, loader, perturbations: tuple[str, ...] | None = None
) -> dict[str, float]:
    """Share of images whose top class changes under each perturbation (:mod:`skinacc.clinical.shift`),
    predicted with the predictor's TTA and gathered so every image counts once.

    Returns:
        ``{perturbation: flip rate}`` (the same on every process).
    """
    from skinacc.clinical.shift import PERTURBATIONS, perturb

    names = perturbations or PERTURBATIONS
    predictor.model.eval()
    flips = torch.zeros(len(names), dtype=torch.float64)
    seen = 0
    t = predictor.temperature  # the averaged views' top class can depend on it

    def top(v: torch.Tensor) -> torch.Tensor:
        return (predictor.logits(v) / t).softmax(-1).mean(1).argmax(1)

    bar = progress_bar(
        loader, desc="stress", show=accelerator.is_main_process, leave=False, dynamic_ncols=True
    )
    with bar:
        for batch in bar:
            x = batch["pixel_values"]
            preds = [top(x)] + [top(perturb(x, n)) for n in names]
            got = accelerator.gather_for_metrics((torch.stack(preds, 1), batch["sample_id"]))
            p, ids = got
            p = p[ids >= 0].cpu()
            seen += len(p)
            flips += (p[:, 1:] != p[:, :1]).sum(0).double()
    return {n: float(f / max(seen, 1)) for n, f in zip(names, flips)}


def assert_ranks_agree(accelerator, value: float, name: str) -> None:
    """Raise if processes hold different values for a decision input (e.g. the gathered val loss).

    Cheap (one tiny gather per epoch) and it turns a silent DDP divergence into a clear error.
    """
    if accelerator.num_processes == 1:
        return
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    allv = accelerator.gather(t).cpu().tolist()
    if any(v != allv[0] and not (math.isnan(v) and math.isnan(allv[0])) for v in allv):
        raise RuntimeError(f"processes disagree on {name}: {allv}")
