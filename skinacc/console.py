"""What a run prints: progress bars a user can turn off, and logs and warnings once per job.

- Progress bars: ``TQDM_DISABLE=1`` (tqdm's own switch) or ``--disable_tqdm`` (the flag's name in
  transformers) turns off every bar skinacc, ``datasets`` and ``huggingface_hub`` draw. tqdm only
  reads the variable for arguments not given, so skinacc's bars, which pass ``disable=`` to show them
  on the main process only, ask :func:`progress_disabled` too.
- Logs and warnings: the main process logs at INFO; the other ranks only log errors and drop Python
  warnings, which every rank would otherwise print once each (one line per GPU in a job's log).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from tqdm.auto import tqdm

__all__ = ["disable_progress_bars", "progress_bar", "progress_disabled", "setup_logging"]

_TRUE = {"1", "true", "yes", "on"}


def progress_disabled() -> bool:
    """Whether ``TQDM_DISABLE`` turns progress bars off."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE


def progress_bar(iterable: Any = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, shown when ``show`` (e.g. on the main process) and not turned off by ``TQDM_DISABLE``."""
    return tqdm(iterable, disable=not show or progress_disabled(), **kwargs)


def disable_progress_bars() -> None:
    """Turn off every progress bar of this process and the processes it starts (``--disable_tqdm``)."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:  # already imported by now: tell them too
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def setup_logging(is_main_process: bool, disable_tqdm: bool = False) -> None:
    """Logging for a recipe's process: INFO on the main process; errors only, and no Python warnings,
    on the others (so each message appears once per job, not once per rank).

    Args:
        is_main_process: ``accelerator.is_main_process`` (rank 0 of the whole job).
        disable_tqdm: Also turn progress bars off (:func:`disable_progress_bars`).
    """
    logging.basicConfig(
        level=logging.INFO if is_main_process else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(logging.INFO if is_main_process else logging.ERROR)
    logging.getLogger("accelerate").setLevel(logging.WARNING if is_main_process else logging.ERROR)
    if not is_main_process:
        warnings.simplefilter("ignore")
        for name in ("datasets", "transformers", "timm", "huggingface_hub"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if disable_tqdm:
        disable_progress_bars()
