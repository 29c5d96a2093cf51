"""Identifiers in OpenAI's formats.

Event ids are time-ordered (a millisecond timestamp in the leading characters, then a per-process
monotonic counter mixed with randomness): they append at the right edge of the id index, which
keeps SQLite inserts ~4x faster than random ids (notes/perf.md). The other ids are random, like
OpenAI's.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
_BASE = len(ALPHABET)


def _random(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, _BASE)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


class _TimeOrdered:
    """24 base62 chars: 9 for the ms clock, 15 for a counter that only ever grows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                # Random start so ids made by several processes in the same ms rarely collide;
                # the top half of the space is left for increments.
                self._counter = secrets.randbelow(_BASE**15 // 2)
            else:
                self._counter += 1 + secrets.randbelow(1024)
            return _encode(self._last_ms, 9) + _encode(self._counter, 15)


_events = _TimeOrdered()


def event_id() -> str:
    return "ftevent-" + _events.next()


def job_id() -> str:
    return "ftjob-" + _random(24)


def file_id() -> str:
    return "file-" + _random(24)


def checkpoint_id() -> str:
    return "ftckpt_" + _random(24)


_REQUEST_PREFIX = "req_" + secrets.token_hex(8)
_request_counter = itertools.count(1)


def request_id() -> str:
    """Unique per request: a random per-process prefix and a counter (no syscall per call; a
    request id only has to be unique, not secret)."""
    return f"{_REQUEST_PREFIX}{next(_request_counter):016x}"


def short_model_id() -> str:
    """The 8-character tail of an ``ft:`` model name."""
    return _random(8)


def fine_tuned_model_name(base: str, organization: str, suffix: str | None, tail: str) -> str:
    """``ft:{base}:{organization}:{suffix}:{id}`` as OpenAI names fine-tuned models."""
    return f"ft:{base}:{organization}:{suffix or ''}:{tail}"


def chat_completion_id() -> str:
    return "chatcmpl-" + _random(29)


def completion_id() -> str:
    return "cmpl-" + _random(29)


def response_id() -> str:
    """``resp_`` + 48 base62, the length of OpenAI's response ids."""
    return "resp_" + _random(48)


def batch_id() -> str:
    return "batch_" + _random(24)


def batch_request_id() -> str:
    """The ``id`` of one line of a batch's output or error file."""
    return "batch_req_" + _random(24)
