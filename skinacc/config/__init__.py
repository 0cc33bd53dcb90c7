"""Typed configuration for skinacc.

Dataclasses hold every option a command takes (launch settings such as the number of processes, mixed
precision and dynamo live only in ``accelerate_configs/*.yaml``): a run's :class:`DataArguments`,
:class:`ModelArguments`, :class:`TrainArguments`, :class:`LoggingArguments` and :class:`ClinicalArguments`, and each other
command's own. Values resolve as ``dataclass defaults < YAML file (--config) < command-line flags``, all
parsed and checked one way (:func:`parse_config`); :func:`validate` collects every problem and raises
one :class:`ConfigError` naming each flag, its bad value and what is allowed. What skinacc knows about an
option (may it change on resume? is it part of a run's set-up? a row of the model card?) is field metadata
(:mod:`skinacc.config.fields`, asked through :mod:`skinacc.config.knowledge`).
"""

from skinacc.config.clinical import ClinicalArguments
from skinacc.config.data import DataArguments, default_cache_dir
from skinacc.config.fields import ConfigError, option
from skinacc.config.files import (
    RUN_CONFIG,
    SECTIONS,
    config_to_dict,
    load_yaml_config,
    read_run_config,
    save_config,
    validate,
)
from skinacc.config.knowledge import card_facts, is_setup, may_change_on_resume
from skinacc.config.model import ModelArguments
from skinacc.config.tracking import LoggingArguments
from skinacc.config.train import TrainArguments

#: The configs of a training run, in the order its sections are saved.
CONFIG_TYPES = (DataArguments, ModelArguments, TrainArguments, LoggingArguments, ClinicalArguments)

__all__ = [
    "CONFIG_TYPES",
    "RUN_CONFIG",
    "SECTIONS",
    "ClinicalArguments",
    "ConfigError",
    "DataArguments",
    "LoggingArguments",
    "ModelArguments",
    "TrainArguments",
    "card_facts",
    "config_to_dict",
    "default_cache_dir",
    "is_setup",
    "load_yaml_config",
    "may_change_on_resume",
    "option",
    "parse_config",
    "read_run_config",
    "save_config",
    "validate",
]


def __getattr__(name: str):
    # parse_config imports transformers (its HfArgumentParser): only when asked for.
    if name in ("parse_config", "ConfigArgumentParser"):
        from skinacc.config import parse

        return getattr(parse, name)
    raise AttributeError(f"module 'skinacc.config' has no attribute {name!r}")
