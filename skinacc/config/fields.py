"""Config fields and what skinacc knows about each, kept on the field itself.

Every option of a config dataclass is declared with :func:`option`: its ``--help`` text, and as field
metadata what the rest of skinacc needs to know about it, asked through the functions here (never
through name lists kept elsewhere), in :mod:`skinacc.config.knowledge`:

- :func:`may_change_on_resume`: the option may differ when a run is resumed (where things go, what is
  logged or evaluated at the end, how data are read); every other option shapes the resumed state and
  a resume refuses a change to it (``skinacc.checkpoint.config_changes``).
- :func:`is_setup`: the option is part of what makes two runs different set-ups when runs are compared
  (``skinacc.compare``); names, places and tracker settings are bookkeeping.
- :func:`card_facts`: the option is a row of the model card's training table, under the label it
  carries (``skinacc.model_card``); rows that combine options are written by the card itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["KNOWLEDGE", "ConfigError", "option"]

#: Keys of a field's metadata that are skinacc's knowledge, not argparse's.
KNOWLEDGE = ("resume", "setup", "card")


class ConfigError(ValueError):
    """One or more configuration values are invalid; the message lists every problem."""


def option(
    help: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    resume: bool = False,
    setup: bool = True,
    card: str | None = None,
) -> Any:
    """A config dataclass field.

    Args:
        help: The ``--help`` text.
        default, default_factory: As ``dataclasses.field``.
        resume: The option may differ when a run is resumed: it never shapes the resumed state.
        setup: The option is part of a run's set-up when runs are compared (False: bookkeeping).
        card: The option's row label in the model card's training table (None: not a row of its own).
    """
    kw: dict[str, Any] = {"metadata": {"help": help, "resume": resume, "setup": setup, "card": card}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    return dataclasses.field(**kw)
