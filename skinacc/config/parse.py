"""Command-line and YAML values into the config dataclasses, parsed and validated one way.

``defaults < --config YAML < flags``: every value from a YAML file (or a trained run's saved options)
becomes the flag a user would type, so it passes through the same ``argparse`` conversions and checks
(types, ``choices``, list shapes) as a flag, then the dataclasses' own ``validate``. A bad value gets one
line naming the file, the option, the value and what is allowed; all YAML problems are listed at once.

Flags may be spelled ``--data_dir`` or ``--data-dir`` (YAML keys too); abbreviations are refused
(``--conf`` is not ``--config``: argparse would accept it, and the YAML would silently not load).

The library never reads ``sys.argv``: callers pass the arguments (``skinacc.cli`` does).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from transformers import HfArgumentParser

from skinacc.config.fields import KNOWLEDGE, ConfigError
from skinacc.config.files import load_yaml_config, validate

__all__ = ["ConfigArgumentParser", "parse_config"]

#: ``defaults`` for :func:`parse_config`: a mapping, or a function of the configs parsed without it
#: (e.g. evaluate.py takes a run's data options unless the user names a data source).
Defaults = dict[str, Any] | Callable[[tuple[Any, ...]], dict[str, Any]] | None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` keeps the description's lines (a command's launch lines stay copyable) and shows
    each option's default."""


class ConfigArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` that raises :class:`ConfigError` instead of exiting, and refuses
    abbreviated flags. Takes the dataclasses, adds ``--config``."""

    def __init__(self, types: Sequence[type], description: str | None = None):
        super().__init__(
            list(types), description=description, allow_abbrev=False, formatter_class=_HelpFormatter
        )
        self.add_argument(
            "--config",
            default=None,
            help="Recipe YAML file (flat, or grouped as data:/model:/train:/logging:).",
        )

    def error(self, message: str):  # argparse's hook for every parse error
        raise ConfigError(message)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        # argparse takes the help text; the rest of the metadata is skinacc's (config.fields). A copy:
        # HfArgumentParser rewrites the field's type in place.
        f = copy.copy(field)
        f.metadata = MappingProxyType({k: v for k, v in field.metadata.items() if k not in KNOWLEDGE})
        HfArgumentParser._parse_dataclass_field(parser, f)

    def action(self, key: str) -> argparse.Action:
        return self._option_string_actions[f"--{key}"]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _tokens(action: argparse.Action, key: str, value: Any) -> list[str]:
    """The flag tokens a user would type for ``key: value`` (``None``/``[]`` are handled by the caller)."""
    if isinstance(value, dict):
        raise ConfigError(f"expected a value, got a mapping {value!r}")
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        return [f"--{key}", *(_text(v) for v in items)]
    if isinstance(value, list):
        raise ConfigError(f"expected one value, got a list {value!r}")
    return [f"--{key}={_text(value)}"]


def _check(parser: ConfigArgumentParser, action: argparse.Action, tokens: list[str]) -> None:
    """Convert and check the values of one option's tokens as argparse does for the flag (type,
    choices, count); a whole parse would also demand the recipe's required flags."""
    strings = tokens[1:] if len(tokens) > 1 else [tokens[0].split("=", 1)[1]]
    try:
        parser._get_values(action, strings)
    except argparse.ArgumentError as e:
        raise ConfigError(e.message) from None


def _accepts_none(types: Sequence[type], key: str) -> bool:
    for t in types:
        for f in dataclasses.fields(t):
            if f.name == key:
                return f.default is None or "None" in str(f.type)
    return False


def _layer_tokens(
    parser: ConfigArgumentParser, types: Sequence[type], layers: list[tuple[str, dict[str, Any]]]
) -> tuple[list[str], dict[str, Any]]:
    """Tokens for the merged layers (a later layer's value wins), each checked alone so that a problem
    names its source; plus the values argparse cannot spell (``None``, ``[]``) as parser defaults."""
    merged: dict[str, tuple[str, Any]] = {}
    for source, values in layers:
        for key, value in values.items():
            merged[key.replace("-", "_")] = (source, value)
    tokens: list[str] = []
    direct: dict[str, Any] = {}
    problems: list[str] = []
    for key, (source, value) in merged.items():
        try:
            action = parser.action(key)
        except KeyError:
            problems.append(f"{source}: unknown option {key!r}")
            continue
        try:
            if value is None or value == []:
                if value is None and not _accepts_none(types, key):
                    raise ConfigError("null is not allowed here; give a value or leave the option out")
                if value == [] and action.nargs not in ("+", "*"):
                    raise ConfigError("expected one value, got an empty list")
                direct[key] = value
                continue
            toks = _tokens(action, key, value)
            _check(parser, action, toks)
        except ConfigError as e:
            problems.append(f"{source}: {key}: {e}")
            continue
        tokens += toks
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return tokens, direct


def parse_config(
    types: Sequence[type],
    argv: Sequence[str],
    description: str | None = None,
    defaults: Defaults = None,
    defaults_source: str = "defaults",
) -> tuple[Any, ...]:
    """Parse ``argv`` (and the ``--config`` YAML it names) into one instance of each of ``types``.

    Args:
        types: The config dataclasses.
        argv: The arguments (the caller's ``sys.argv[1:]``).
        description: ``--help`` text.
        defaults: Values between the dataclass defaults and the YAML file (e.g. a trained run's data
            options), or a function that gets the configs parsed without them and returns them.
        defaults_source: What ``defaults`` are called in error messages (e.g. a run_config.yaml path).

    Returns:
        One validated instance per type, in order.

    Raises:
        ConfigError: Any value that does not parse or validate (all YAML problems listed at once).
    """
    argv = list(argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    cfg_path = pre.parse_known_args(argv)[0].config
    yaml_layer = [(f"--config={cfg_path}", load_yaml_config(cfg_path, tuple(types)))] if cfg_path else []

    def parse(layers: list[tuple[str, dict[str, Any]]]) -> tuple[Any, ...]:
        parser = ConfigArgumentParser(types, description=description)
        tokens, direct = _layer_tokens(parser, types, layers)
        parser.set_defaults(**direct)
        *outputs, rest = parser.parse_args_into_dataclasses(args=tokens + argv, return_remaining_strings=True)
        if rest:
            raise ConfigError(f"unknown argument(s): {' '.join(rest)} (see --help)")
        return tuple(outputs[: len(types)])  # then a Namespace holding --config

    if callable(defaults):
        defaults = defaults(parse(yaml_layer))
    known = {f.name for t in types for f in dataclasses.fields(t)}
    layer0 = [(defaults_source, {k: v for k, v in defaults.items() if k in known})] if defaults else []
    configs = parse(layer0 + yaml_layer)
    validate(*configs)
    return configs
