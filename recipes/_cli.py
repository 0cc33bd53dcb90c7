"""Command-line entry shared by the recipes: parse (``skinacc.arguments``), run, and print errors about
the user's input as one line.

Kept beside the recipes so that ``skinacc`` itself never reads ``sys.argv``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from skinacc.arguments import Defaults, parse_config
from skinacc.config import ConfigError


def parse_args(
    types: tuple[type, ...],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    defaults: Defaults = None,
    defaults_source: str = "defaults",
) -> tuple[Any, ...]:
    """Parse the recipe's flags (and ``--config`` YAML) into its config dataclasses, validated; a bad
    value exits with status 2 and one message (see :func:`skinacc.arguments.parse_config`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return parse_config(types, argv, description, defaults, defaults_source)
    except ConfigError as e:
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "skinacc"
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run(main, argv: Sequence[str] | None = None) -> None:
    """Run a recipe's ``main``; errors about the user's input print as one clear line, not a traceback.

    Set ``SKINACC_TRACEBACK=1`` to see the full traceback anyway.

    However ``main`` ends, the objects it made are frozen out of the interpreter's final garbage
    collection, which otherwise walks them all at exit (2.5 s after a training run here: more than
    half of the 5 s ``accelerate launch`` gives a stopped run before it kills it).
    """
    import gc
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
    finally:
        gc.freeze()  # the process ends now; the OS frees the memory
