"""What every command shares: parsing its flags into config dataclasses, and running it so that a
mistake in the user's input is one line, a stop is exit status 143, and exiting is quick.

This package is the only part of skinacc that reads ``sys.argv``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from skinacc.config.fields import ConfigError
from skinacc.config.parse import Defaults, parse_config

__all__ = ["call", "parse_args", "run"]


def parse_args(
    types: tuple[type, ...],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    defaults: Defaults = None,
    defaults_source: str = "defaults",
) -> tuple[Any, ...]:
    """Parse a command's flags (and ``--config`` YAML) into its config dataclasses, validated; a bad value
    exits with status 2 and one message (see :func:`skinacc.config.parse.parse_config`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return parse_config(types, argv, description, defaults, defaults_source)
    except ConfigError as e:
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "skinacc"
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def call(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main`` and return its exit status: 0, 2 for a mistake in the user's input (one
    line on stderr, not a traceback), 143 for a stopped training run (it printed how to continue), or a
    ``SystemExit``'s own code.

    Set ``SKINACC_TRACEBACK=1`` to see the full traceback of a user error anyway.
    """
    import os

    from skinacc.checkpoint import CheckpointError
    from skinacc.hub import HubError
    from skinacc.models import PretrainedWeightsError
    from skinacc.rundir import OutputDirError
    from skinacc.stopping import EXIT_STOPPED, TrainingStopped

    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except TrainingStopped:
        return EXIT_STOPPED
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
        return 2
    return 0


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run a command's ``main`` as a process's last act (:func:`call`), then exit with its status.

    However ``main`` ends, the objects it made are frozen out of the interpreter's final garbage
    collection, which otherwise walks them all at exit (2.5 s after a training run here: more than
    half of the 5 s ``accelerate launch`` gives a stopped run before it kills it).
    """
    import gc

    try:
        code = call(main, argv)
    finally:
        gc.freeze()  # the process ends now; the OS frees the memory
    if code:
        raise SystemExit(code)
