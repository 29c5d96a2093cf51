"""The inference process: serves ``Generate``/``Cancel`` from a connection until it closes.

Started by the API side with the ``spawn`` start method::

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=ftserve.inference.process.main, args=(child, settings))

A thread receives messages so that a ``Cancel`` is seen while a batch decodes: it marks the
request cancelled at once (nothing more is sent for it from that moment) and queues the message
for the decode loop, which drops the request's rows before its next step. All sends go through
one lock. The process lowers its own scheduling priority so that the API process, which shares
the machine, stays responsive; it returns when the connection reaches EOF.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from multiprocessing.connection import Connection

from ftserve.inference.protocol import Cancel, EngineSettings, Failed, FromInference, Generate

_EOF = object()
NICENESS = 5  # below the API process, so the events endpoint keeps its speed


class _Outbox:
    def __init__(self, conn: Connection):
        self._conn = conn
        self._lock = threading.Lock()
        self.cancelled: set[str] = set()
        self.closed = False

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self.cancelled.add(request_id)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self.cancelled.discard(request_id)

    def send(self, message: FromInference) -> None:
        with self._lock:
            if self.closed or message.request_id in self.cancelled:
                return
            try:
                self._conn.send(message)
            except (OSError, EOFError, BrokenPipeError):
                self.closed = True


def _receive(conn: Connection, inbox: queue.Queue[object], outbox: _Outbox) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            inbox.put(_EOF)
            return
        if isinstance(message, Cancel):
            outbox.cancel(message.request_id)
        inbox.put(message)


def _refuse_all(inbox: queue.Queue[object], outbox: _Outbox, message: str) -> None:
    """No engine (the configured device is missing, say): every request fails with why."""
    while (item := inbox.get()) is not _EOF:
        if isinstance(item, Generate):
            outbox.send(Failed(item.request_id, message))


def main(conn: Connection, settings: EngineSettings) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    with contextlib.suppress(OSError, AttributeError):
        # Once: `ftserve inference` calls main again for every connection.
        os.nice(max(0, NICENESS - os.nice(0)))

    import torch

    torch.set_num_threads(max(1, settings.torch_threads))
    from transformers.utils import logging as hf_logging

    # Per-load progress bars on stderr are noise in a service's log.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    from ftserve.inference.engine import Engine

    outbox = _Outbox(conn)
    inbox: queue.Queue[object] = queue.Queue()
    threading.Thread(
        target=_receive, args=(conn, inbox, outbox), name="inference-receive", daemon=True
    ).start()
    try:
        engine = Engine(settings, outbox.send)
    except Exception as exc:
        _refuse_all(inbox, outbox, f"The inference engine cannot start: {exc}")
        return
    with torch.inference_mode():
        while True:
            messages = [inbox.get()] if not engine.busy else []
            with contextlib.suppress(queue.Empty):
                while True:
                    messages.append(inbox.get_nowait())
            for message in messages:
                if message is _EOF:
                    return
                if isinstance(message, Generate):
                    outbox.forget(message.request_id)
                    engine.submit(message)
                elif isinstance(message, Cancel):
                    engine.cancel(message.request_id)
                    # The engine has dropped it: nothing more can be sent for it.
                    outbox.forget(message.request_id)
            engine.run_once()
