"""What skinacc knows about options, asked of the config dataclasses' field metadata (declared with
:func:`skinacc.config.fields.option`): may an option change on resume, is it part of a run's set-up,
is it a row of the model card."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from skinacc.config.files import SECTIONS

__all__ = ["card_facts", "config_fields", "is_setup", "may_change_on_resume"]


def config_fields(*types: type) -> Iterator[dataclasses.Field]:
    """Every field of the given config dataclasses."""
    for t in types:
        yield from dataclasses.fields(t)


def _knowledge(name: str, key: str, default: bool) -> bool:
    for f in config_fields(*SECTIONS.values()):
        if f.name == name:
            return bool(f.metadata.get(key, default))
    return default


def may_change_on_resume(name: str) -> bool:
    """Whether option ``name`` may differ when a run is resumed (unknown names: no)."""
    return _knowledge(name, "resume", False)


def is_setup(name: str) -> bool:
    """Whether option ``name`` is part of a run's set-up when runs are compared (unknown names: yes)."""
    return _knowledge(name, "setup", True)


def card_facts(config: dict[str, Any]) -> dict[str, Any]:
    """The model card's one-option rows of a saved run config: ``{label: value}`` for every option
    declared with a ``card`` label, the field's default where the config predates the option.

    Args:
        config: A run's resolved options, ``{section: {option: value}}`` (``run_config.yaml``).
    """
    facts: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = config.get(section) or {}
        for f in dataclasses.fields(cls):
            label = f.metadata.get("card")
            if not label:
                continue
            if f.name in values:
                facts[label] = values[f.name]
            elif f.default is not dataclasses.MISSING:
                facts[label] = f.default
    return facts
