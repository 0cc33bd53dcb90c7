"""Processes that decode images for the main process, results in order: :func:`ordered_map` over a
:func:`make_pool` (forked, like DataLoader workers on Linux; each worker shielded from stop signals meant
for its training process, :func:`skinacc.stopping.shield_worker`). The streaming loader and
``predict`` decode with them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from skinacc.data.transforms import ImageTransform
from skinacc.stopping import shield_worker, worker_context

__all__ = ["make_pool", "ordered_map", "worker_transform"]


def ordered_map(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int, prefetch: int = 2, pool=None
) -> Iterator[Any]:
    """``fn(item)`` for every item, in order, computed by ``workers`` processes at most
    ``workers x prefetch`` items ahead (``multiprocessing.Pool.imap`` reads its whole input at once;
    a stream of 250k images must not be). ``workers=0`` computes in this process.

    Args:
        pool: A pool to use (kept open by the caller); else one is made for this call.
    """
    if workers <= 0 and pool is None:
        for item in items:
            yield fn(item)
        return
    own = pool is None
    if own:
        pool = make_pool(workers)
    try:
        pending: deque = deque()
        limit = max(1, workers * prefetch)
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        if own:
            pool.terminate()


def _worker_init(owner: int) -> None:
    # Decoding workers use one thread each (as DataLoader workers do): the pool has the cores.
    torch.set_num_threads(1)
    # A stop request is the training process's business: the worker ignores Ctrl+C and any SIGTERM
    # that does not come from its owner (the pool ends its workers with SIGTERM), and dies with it.
    shield_worker(owner)


def make_pool(workers: int, transform: ImageTransform | None = None):
    """A process pool for decoding (forked, like DataLoader workers on Linux), each worker holding
    ``transform`` when given."""
    import atexit

    # Workers are born with stop signals held until their initializer's shield is up (also the ones
    # the pool starts later in place of a dead worker).
    ctx = worker_context()
    owner = os.getpid()
    if transform is None:
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(owner,))
    else:
        pool = ctx.Pool(workers, initializer=_worker_init_transform, initargs=(owner, transform))
    # Ended before the interpreter tears modules down (a pool collected later complains on stderr).
    atexit.register(pool.terminate)
    return pool


#: The transform of the loader that made this worker's pool (given once, at fork; not per batch).
_WORKER_TRANSFORM: ImageTransform | None = None


def _worker_init_transform(owner: int, transform: ImageTransform) -> None:
    global _WORKER_TRANSFORM
    _worker_init(owner)
    _WORKER_TRANSFORM = transform


def worker_transform() -> ImageTransform:
    """The transform this pool worker was made with (:func:`make_pool`'s ``transform``)."""
    assert _WORKER_TRANSFORM is not None, "not in a pool worker made with a transform"
    return _WORKER_TRANSFORM
