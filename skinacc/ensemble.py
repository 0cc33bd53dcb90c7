"""A cross-validation's K fold models as one model: the ensemble artifact, and weight-averaged soups.

    skinacc train --config recipes/configs/dermoscopy.yaml --cv_folds 5 --test_size 0 --output_dir outputs/cv5
    skinacc evaluate --model outputs/cv5 --data_dir /data/other-clinic     # outputs/cv5/ensemble
    skinacc predict --model outputs/cv5/ensemble --inputs lesion.jpg
    skinacc app --model outputs/cv5/ensemble
    skinacc ensemble --cv_dir outputs/cv5 --soup both    # rebuild it; uniform and greedy soups too

Every fold model has seen 1 - 1/K of the labelled lesions, and together they have seen all of them. The
ensemble folder (written at the end of every ``--cv_folds`` run) holds each fold's exported model as it
is (``members/fold_<k>/``, a timm folder with its own test-time augmentation and temperature, fitted on
the fold it held out), ``ensemble.json`` (members and weights), the cross-validation's data options
(``run_config.yaml``: ``evaluate`` rebuilds the same test split) and a model card. Loaded, it is one
``nn.Module`` (:class:`EnsembleModel`) whose output is the log of the members' averaged tempered
probabilities: every consumer (evaluate, predict, the demo, Grad-CAM) runs it through the one inference
path, and its TTA averages the views of that mixture, which is each member's TTA then the average.

A soup (Wortsman et al. 2022, "Model soups") averages the fold models' weights instead: one plain timm
model at the cost of one. ``uniform`` averages all of them; ``greedy`` adds them in the order of their
out-of-fold balanced accuracy and keeps one only if the soup's balanced accuracy on the cross-validated
images does not drop. That check is in-sample (every image trained all members but one): it catches a
soup whose averaged weights no longer form a working network, it does not estimate accuracy. Whether a
soup holds up is measured on images none of them saw (BENCHMARKS.md). A soup's temperature is the one
fitted on the pooled out-of-fold predictions (``cv_report.json``'s ``oof_temperature``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skinacc.rundir import atomic_folder

__all__ = [
    "ENSEMBLE_DIR",
    "ENSEMBLE_FILE",
    "EnsembleModel",
    "greedy_soup",
    "is_ensemble",
    "load_ensemble",
    "save_ensemble",
    "soup_state_dict",
]

#: The file that makes a folder an ensemble, and the folder a cross-validation writes it to.
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_DIR = "ensemble"
FORMAT = "skinacc-ensemble"


class EnsembleModel(nn.Module):
    """Members' tempered softmaxes averaged, as log-probabilities (so a softmax of the output is the
    ensemble's probability, and a temperature of 1 leaves it as it is).

    Args:
        members: Classifiers with the same classes in the same order.
        temperatures: Each member's softmax temperature.
        weights: Each member's weight (normalised; default equal).
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        temperatures: Sequence[float],
        weights: Sequence[float] | None = None,
    ):
        super().__init__()
        if not members or len(temperatures) != len(members):
            raise ValueError(f"{len(members)} members and {len(temperatures)} temperatures")
        w = torch.tensor([1.0] * len(members) if weights is None else list(weights), dtype=torch.float64)
        if len(w) != len(members) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"ensemble weights {w.tolist()}: one non-negative weight per member, not all 0")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(list(temperatures), dtype=torch.float32))
        self.register_buffer("log_weights", (w / w.sum()).log().float())
        first = members[0]
        self.num_classes = int(first.num_classes)
        self.pretrained_cfg = dict(getattr(first, "pretrained_cfg", {}) or {})
        self.pretrained_cfg["architecture"] = (
            f"ensemble of {len(members)} x {self.pretrained_cfg.get('architecture')}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack(
            [(m(x).float() / t).log_softmax(-1) for m, t in zip(self.members, self.temperatures)]
        )
        return torch.logsumexp(logp + self.log_weights[:, None, None], 0)


def is_ensemble(folder: str | os.PathLike) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def save_ensemble(
    members: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    run_config: str | os.PathLike | None = None,
    card: str | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write an ensemble folder (see the module docstring), atomically; it replaces ``folder``.

    Args:
        members: Exported model folders (a run's ``best/``), copied in whole.
        folder: Destination.
        names: Member folder names (default ``member_<i>``).
        weights: Each member's weight (default equal).
        run_config: A run's ``run_config.yaml`` whose data options (fold options dropped) become the
            ensemble's, so ``evaluate --model <folder>`` rebuilds the same split.
        card: ``README.md`` text.
        info: More facts for ``ensemble.json`` (e.g. the cross-validation report's figures).

    Raises:
        ValueError: The members disagree on classes, preprocessing or test-time augmentation.
    """
    import yaml

    folder = Path(folder)
    names = list(names or [f"member_{i}" for i in range(len(members))])
    configs = [json.loads((Path(m) / "config.json").read_text()) for m in members]
    _check_members(configs, [str(m) for m in members])
    with atomic_folder(folder) as tmp:
        entries = []
        for i, (src, name, cfg) in enumerate(zip(members, names, configs)):
            shutil.copytree(src, tmp / "members" / name)
            inference = cfg.get("skinacc") or {}
            entries.append({
                "path": f"members/{name}",
                "weight": 1.0 if weights is None else float(weights[i]),
                "temperature": float(inference.get("temperature", 1.0)),
                "tta": inference.get("tta", "none"),
                "source": str(Path(src).resolve()),
            })  # fmt: skip
        spec = {"format": FORMAT, "version": 1, "combine": "mean of tempered probabilities",
                "label_names": configs[0]["label_names"], "tta": entries[0]["tta"], "members": entries,
                **(info or {})}  # fmt: skip
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2))
        if run_config is not None:
            cfg = yaml.safe_load(Path(run_config).read_text()) or {}
            for k in ("cv_fold", "cv_folds"):
                cfg.get("data", {}).pop(k, None)
            (tmp / "run_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        if card:
            (tmp / "README.md").write_text(card)
    return folder


def _check_members(configs: list[dict[str, Any]], where: list[str]) -> None:
    """Members must be interchangeable on input and output: one preprocessing, one set of classes."""
    if not configs:
        raise ValueError("an ensemble needs at least one member")
    keys = ("input_size", "mean", "std", "crop_pct", "interpolation")
    ref = configs[0]
    for cfg, path in zip(configs[1:], where[1:]):
        if cfg.get("label_names") != ref.get("label_names"):
            raise ValueError(f"ensemble member {path} has classes {cfg.get('label_names')}, "
                             f"{where[0]} has {ref.get('label_names')}: members must share classes and order")  # fmt: skip
        for k in keys:
            if cfg["pretrained_cfg"].get(k) != ref["pretrained_cfg"].get(k):
                raise ValueError(f"ensemble member {path} has {k} {cfg['pretrained_cfg'].get(k)}, {where[0]} "
                                 f"has {ref['pretrained_cfg'].get(k)}: members must share preprocessing")  # fmt: skip
        tta = (cfg.get("skinacc") or {}).get("tta", "none")
        if tta != (ref.get("skinacc") or {}).get("tta", "none"):
            raise ValueError(
                f"ensemble member {path} uses --tta {tta}, {where[0]} another: members must share it"
            )


def load_ensemble(
    folder: str | os.PathLike, load_member: Callable[[str], Any]
) -> tuple[EnsembleModel, Any, dict]:
    """An ensemble folder's members as one :class:`EnsembleModel` (at temperature 1: the members' own
    temperatures are inside it). :func:`skinacc.artifact.load_model` makes it a ``LoadedModel``.

    Args:
        load_member: Loads one member folder (``local-dir:<path>``) as a ``LoadedModel``.

    Returns:
        ``(model, the first member, the stored decision rules as a dict or None)``.

    Raises:
        ValueError: Not an ensemble folder of this format, or members that disagree.
    """
    folder = Path(folder)
    spec = json.loads((folder / ENSEMBLE_FILE).read_text())
    if spec.get("format") != FORMAT or spec.get("version") != 1:
        raise ValueError(f"{folder / ENSEMBLE_FILE}: not a {FORMAT} v1 file (format {spec.get('format')!r})")
    entries = spec["members"]
    # The configs are checked before any weights are read: a mismatch fails fast.
    _check_members(
        [json.loads((folder / e["path"] / "config.json").read_text()) for e in entries],
        [str(folder / e["path"]) for e in entries],
    )
    members = [load_member(f"local-dir:{folder / e['path']}") for e in entries]
    model = EnsembleModel(
        [m.model for m in members], [m.temperature for m in members], [e["weight"] for e in entries]
    )
    return model, members[0], spec.get("decision")


def soup_state_dict(
    state_dicts: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The weighted average of state dicts (floating tensors, BatchNorm statistics included); integer
    buffers such as ``num_batches_tracked`` are taken from the first.

    Raises:
        ValueError: The state dicts have different keys or shapes (different architectures).
    """
    if not state_dicts:
        raise ValueError("a soup needs at least one model")
    w = [1.0] * len(state_dicts) if weights is None else [float(x) for x in weights]
    total = sum(w)
    ref = state_dicts[0]
    out: dict[str, torch.Tensor] = {}
    for i, sd in enumerate(state_dicts[1:], 1):
        if sd.keys() != ref.keys() or any(sd[k].shape != ref[k].shape for k in ref):
            raise ValueError(f"soup ingredient {i} does not have the first one's architecture")
    for k, v in ref.items():
        if v.is_floating_point():
            acc = sum(wi * sd[k].double() for wi, sd in zip(w, state_dicts))
            out[k] = (acc / total).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def greedy_soup(
    state_dicts: Sequence[dict[str, torch.Tensor]],
    ranking: Sequence[float],
    score: Callable[[dict[str, torch.Tensor]], float],
) -> tuple[list[int], list[dict[str, Any]]]:
    """Wortsman et al.'s greedy soup: ingredients in descending ``ranking``, each kept if the soup's
    ``score`` does not drop.

    Returns:
        The kept ingredients (indices) and a log of every step (``added``, ``score``, ``kept``).
    """
    order = sorted(range(len(state_dicts)), key=lambda i: -ranking[i])
    kept = [order[0]]
    best = score(state_dicts[order[0]])
    log = [{"added": order[0], "score": best, "kept": True}]
    for i in order[1:]:
        s = score(soup_state_dict([state_dicts[j] for j in [*kept, i]]))
        ok = s >= best
        log.append({"added": i, "score": s, "kept": ok})
        if ok:
            kept, best = [*kept, i], s
    return kept, log
