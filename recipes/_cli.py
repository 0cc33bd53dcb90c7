"""Command-line parsing shared by the recipes: dataclass defaults < ``--config`` YAML < flags.

Kept beside the recipes (not in the library) so that ``skinacc`` itself never parses ``sys.argv``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from transformers import HfArgumentParser

from skinacc.config import ConfigError, load_yaml_config, validate


def parse_args(
    types: tuple[type, ...],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    """Parse the recipe's flags into its config dataclasses, validated.

    Args:
        types: The dataclasses the recipe takes.
        argv: Arguments (default ``sys.argv[1:]``).
        description: ``--help`` text.
        defaults: Values between the dataclass defaults and the YAML file (e.g. a trained run's data
            options, so evaluation rebuilds the same split).

    Returns:
        One instance per type, in order.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(types, description=description)
    parser.add_argument(
        "--config", default=None, help="Recipe YAML file (flat, or grouped as data:/model:/train:/logging:)."
    )
    cfg_path = flag_value(argv, "--config")
    try:
        if defaults:
            known = {f for t in types for f in t.__dataclass_fields__}
            parser.set_defaults(**{k: v for k, v in defaults.items() if k in known})
        if cfg_path:
            parser.set_defaults(**load_yaml_config(cfg_path, types))
        *outputs, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        configs = outputs[: len(types)]  # then a Namespace holding --config
        if rest:
            raise ConfigError(f"unknown argument(s): {' '.join(rest)} (see --help)")
        validate(*configs)
    except ConfigError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return tuple(configs)


def flag_value(argv: Sequence[str] | None, flag: str) -> str | None:
    """The value of ``--flag V`` or ``--flag=V`` in ``argv`` (before full parsing)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def run(main, argv: Sequence[str] | None = None) -> None:
    """Run a recipe's ``main``; errors about the user's input print as one clear line, not a traceback.

    Set ``SKINACC_TRACEBACK=1`` to see the full traceback anyway.
    """
    import os

    from skinacc.checkpoint import CheckpointError
    from skinacc.hub import HubError
    from skinacc.models import PretrainedWeightsError
    from skinacc.rundir import OutputDirError

    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (
        ConfigError,
        CheckpointError,
        PretrainedWeightsError,
        HubError,
        OutputDirError,
        FileNotFoundError,
        ValueError,
    ) as e:
        if os.environ.get("SKINACC_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
