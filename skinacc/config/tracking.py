"""Experiment tracking and publishing: :class:`LoggingArguments`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from skinacc.config.fields import option

__all__ = ["LoggingArguments"]


@dataclass
class LoggingArguments:
    """Experiment tracking and publishing."""

    report_to: Literal["wandb", "tensorboard", "none"] = option(
        "Tracker used through accelerate. W&B without an API key and without WANDB_MODE logs offline.",
        default="wandb",
        resume=True,
        setup=False,
    )
    project: str = option("Tracker project (W&B project).", default="skinacc", resume=True, setup=False)
    run_name: str | None = option(
        "Run name (default: derived from model, processes, precision, compile).",
        default=None,
        resume=True,
        setup=False,
    )
    run_group: str | None = option(
        "Run group (default: derived from model and data).", default=None, resume=True, setup=False
    )
    tags: list[str] | None = option("Extra run tags.", default=None, resume=True, setup=False)
    disable_tqdm: bool = option(
        "Turn off progress bars (as TQDM_DISABLE=1 does; e.g. for log files). Epoch lines still print.",
        default=False,
        resume=True,
    )
    log_model: bool = option(
        "Log the best model as a W&B model artifact at the end of training.", default=True, resume=True
    )
    push_to_hub: bool = option(
        "Publish the best model to the Hugging Face Hub (timm format + model card) at the end.",
        default=False,
        resume=True,
    )
    hub_model_id: str | None = option(
        "Hub repository for --push_to_hub, e.g. 'my-org/skinacc-efficientnet-b3'.", default=None, resume=True
    )
    hub_private: bool = option("Create the Hub repository as private.", default=False, resume=True)
    hub_license: str | None = option(
        "Licence id written into the model card (e.g. 'cc-by-nc-sa-4.0' for a model trained on HAM10000 / "
        "the shared ISIC set). Default: 'other', and the card says the training data's terms apply.",
        default=None,
        resume=True,
    )

    def validate(self) -> list[str]:
        p: list[str] = []
        if self.push_to_hub and not self.hub_model_id:
            p.append("--push_to_hub needs --hub_model_id=<user-or-org>/<name>")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            p.append(f"--hub_model_id={self.hub_model_id!r}: must look like '<user-or-org>/<name>'")
        return p
