"""Riding out a blob store that is unreachable for a while (a restart, a network blip): the
training process retries a save or a download with a bounded backoff, then gives up with an
error that says what could not be saved and why. Nothing is reported done before it is."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from .protocol import BlobUnavailable

log = logging.getLogger("ftserve.blobs")

T = TypeVar("T")
FIRST_DELAY = 0.25
MAX_DELAY = 5.0


def retrying(
    what: str,
    fn: Callable[[], T],
    *,
    seconds: float,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, tried again while it raises :class:`BlobUnavailable`, for up to ``seconds``
    (waits of 0.25 s doubling to 5 s), or until ``stop()`` says the result is not wanted any
    more. Then the last error is raised, its detail naming ``what`` and how long it tried."""
    deadline = time.monotonic() + seconds
    delay = FIRST_DELAY
    tries = 0
    while True:
        try:
            return fn()
        except BlobUnavailable as exc:
            tries += 1
            left = deadline - time.monotonic()
            if left <= 0 or stop():
                raise BlobUnavailable(
                    f"could not {what}: the blob store stayed unreachable for {seconds:g} s "
                    f"({tries} tries); last error: {exc.detail}"
                ) from exc
            wait = min(delay, left)
            log.warning(
                "could not %s (%s); retrying in %.2f s (try %d)", what, exc.detail, wait, tries
            )
            sleep(wait)
            delay = min(delay * 2, MAX_DELAY)
