"""The training process's store: a call that finds the database unreachable is tried again.

A database restart or fail-over drops every connection at once; a training process that took
that as a training failure would fail (or crash) a job that only had to wait a few seconds.
So each store call of a training process is retried on :class:`~ftserve.errors.StoreError`
while its worker lives, backing off, for up to ``patience`` seconds; after that the error
propagates and the process exits without recording anything, and the worker requeues the job
(it resumes from its last checkpoint).

Retrying is safe because every write a training process makes can be repeated: its events
carry ids the store inserts once (and per-step keys), a checkpoint row replaces the one at its
step, and a claimed write whose first try did commit is refused on the second (the claim was
released with it), which the caller tells apart by reading the job. A refusal
(:class:`~ftserve.store.protocol.WriteRefused`) is an answer, never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

from ..errors import StoreError
from ..store.protocol import Store

log = logging.getLogger("ftserve.child")

PATIENCE_SECONDS = 120.0
_FIRST_DELAY, _MAX_DELAY = 0.05, 1.0


class _Retrying:
    def __init__(self, store: Store, worker_alive: Callable[[], bool], patience: float) -> None:
        self._store = store
        self._alive = worker_alive
        self._patience = patience

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            give_up = time.monotonic() + self._patience
            delay = _FIRST_DELAY
            while True:
                try:
                    return attr(*args, **kwargs)
                except StoreError as exc:
                    if not self._alive() or time.monotonic() + delay > give_up:
                        raise
                    if delay == _FIRST_DELAY:
                        log.warning("store call %s failed (%s); retrying", name, exc)
                    time.sleep(delay)
                    delay = min(delay * 2, _MAX_DELAY)

        setattr(self, name, call)  # found directly from now on, without __getattr__
        return call


def retrying(
    store: Store, worker_alive: Callable[[], bool], patience: float = PATIENCE_SECONDS
) -> Store:
    return cast(Store, _Retrying(store, worker_alive, patience))
