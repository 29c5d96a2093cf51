"""Loopback ports for the servers the tests start, never the same one twice in a run.

A port the kernel picks for ``bind(("127.0.0.1", 0))`` is only free until someone else takes
it, and with pytest-xdist that someone is often another worker: its probe can be handed the
same ephemeral port before our server binds it, or its clients' outgoing connections can take
it (they draw from the same ephemeral range). So each worker hands out ports in turn from a
block of its own below the ephemeral range (``ip_local_port_range``, 32768 and up by default),
skipping any port that something outside the run holds. The starting point in the block is
random so that two runs on one machine (two checkouts) rarely walk the same ports.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import socket
from collections.abc import Iterator

_FIRST = 10_000  # below this: well-known and commonly configured services
_LAST = 32_767  # the ephemeral range starts above
_BLOCK_MAX = 2_000


def _worker_block() -> range:
    """This process's block: the ``-n`` workers (``gw0``, ``gw1``, ...) split the span evenly;
    a run without xdist takes all of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = min(_BLOCK_MAX, (_LAST - _FIRST + 1) // max(count, 1))
    start = _FIRST + index * size
    return range(start, start + size)


def _candidates() -> Iterator[int]:
    block = _worker_block()
    offset = random.randrange(len(block))
    for i in itertools.count():
        yield block[(offset + i) % len(block)]


_next_candidate = _candidates()


def free_port() -> int:
    """A loopback TCP port free now that no other call in this test run returns."""
    for _ in range(len(_worker_block())):
        port = next(_next_candidate)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_worker_block()}")
