"""The API side of inference: one supervised inference process, and per-request streams.

The inference process (``ftserve.inference.process.main``) is spawned lazily, on the first
generation, so a server that never generates never loads torch (this module imports no torch).
One duplex pipe carries :mod:`ftserve.inference.protocol` messages both ways:

- sends (``Generate``, ``Cancel``) go through one lock and run off the event loop, since a full
  pipe blocks;
- one reader thread per process receives everything and routes each message by ``request_id``
  into that request's ``asyncio.Queue`` with ``loop.call_soon_threadsafe``.

If the process dies (EOF on the pipe), every request it was serving gets a ``Failed``, the
process is reaped, and the next request starts a new one: the API itself stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import multiprocessing
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess

from ..config import Settings
from ..errors import ApiError, InferenceFailed, InvalidRequest, NotFound
from .protocol import (
    Accepted,
    Cancel,
    EngineSettings,
    Failed,
    Finished,
    FromInference,
    Generate,
    Piece,
    Rejected,
    ToInference,
)

log = logging.getLogger("ftserve.inference")

STOP_GRACE_SECONDS = 10.0


# The priority of the requests generated in this context: live by default; the batch runner sets
# BATCH_PRIORITY around its in-process calls of the completion endpoints, which read nothing else.
PRIORITY: contextvars.ContextVar[int] = contextvars.ContextVar("ftserve_priority", default=0)


def rejection_error(msg: Rejected) -> ApiError:
    cls: type[ApiError] = NotFound if msg.status == 404 else InvalidRequest
    return cls(msg.message, param=msg.param, code=msg.code, status=msg.status)


@dataclass(eq=False)
class _Route:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[FromInference]


@dataclass(eq=False)
class _Process:
    process: SpawnProcess | None  # None: a separate `ftserve inference` reached over a socket
    conn: Connection
    routes: dict[str, _Route] = field(default_factory=dict)
    dead: bool = False


def _deliver(route: _Route, msg: FromInference) -> None:
    with contextlib.suppress(RuntimeError):  # the request's loop is gone
        route.loop.call_soon_threadsafe(route.queue.put_nowait, msg)


class Stream:
    """One request's answer: :attr:`accepted`, then pieces and finishes for ``n`` choices."""

    def __init__(
        self,
        client: InferenceClient,
        request_id: str,
        n: int,
        accepted: Accepted,
        queue: asyncio.Queue[FromInference],
    ) -> None:
        self._client = client
        self.request_id = request_id
        self.accepted = accepted
        self._queue = queue
        self._open = n  # choices not finished yet
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    async def __aiter__(self) -> AsyncIterator[Piece | Finished]:
        while not self._done:
            msg = await self._queue.get()
            if isinstance(msg, Failed):
                self._finish()
                raise InferenceFailed(msg.message)
            if isinstance(msg, Piece):
                yield msg
            elif isinstance(msg, Finished):
                self._open -= 1
                if self._open <= 0:
                    self._finish()
                yield msg

    def _finish(self) -> None:
        self._done = True
        self._client._forget(self.request_id)

    def cancel(self) -> None:
        """The client went away or stopped reading: stop generating (idempotent)."""
        if self._done:
            return
        self._finish()
        self._client._cancel(self.request_id)


class InferenceClient:
    def __init__(
        self, settings: EngineSettings, remote: str | None = None, key: bytes = b""
    ) -> None:
        self._settings = settings
        self._remote = remote  # FTSERVE_INFERENCE_URL
        self._key = key
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._current: _Process | None = None
        self._closed = False

    # -- for tests and diagnostics -----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        current = self._current
        if current is None or current.dead or current.process is None:
            return None
        return current.process.pid

    # -- requests -------------------------------------------------------------------------------
    async def generate(self, req: Generate) -> Stream:
        """Send ``req``; return its stream once the inference process accepted it. A rejection
        is raised as the matching 400/404; a failure or a dead process as a 500. The request
        goes at the priority of :data:`PRIORITY` in this context (a batch's line: lower)."""
        priority = PRIORITY.get()
        if priority != req.priority:
            req = dataclasses.replace(req, priority=priority)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[FromInference] = asyncio.Queue()
        route = _Route(loop, queue)
        await asyncio.to_thread(self._submit, req, route)
        try:
            first = await queue.get()
        except asyncio.CancelledError:
            self._forget(req.request_id)
            self._cancel(req.request_id)
            raise
        if isinstance(first, Accepted):
            return Stream(self, req.request_id, req.sampling.n, first, queue)
        self._forget(req.request_id)
        if isinstance(first, Rejected):
            raise rejection_error(first)
        if isinstance(first, Failed):
            raise InferenceFailed(first.message)
        raise InferenceFailed(f"The inference process answered {type(first).__name__} first.")

    def _submit(self, req: Generate, route: _Route) -> None:
        with self._lock:
            if self._closed:
                raise InferenceFailed("The server is shutting down.")
            proc = self._ensure_started()
            proc.routes[req.request_id] = route
            try:
                proc.conn.send(req)
            except (OSError, ValueError, EOFError) as exc:
                proc.routes.pop(req.request_id, None)
                log.error("could not send to the inference process: %r", exc)
                self._mark_dead(proc)
                raise InferenceFailed(
                    "The inference process is not available; try again."
                ) from None

    def _cancel(self, request_id: str) -> None:
        threading.Thread(
            target=self._send,
            args=(Cancel(request_id),),
            name="ftserve-inference-cancel",
            daemon=True,
        ).start()

    def _send(self, msg: ToInference) -> None:
        with self._lock:
            proc = self._current
            if proc is None or proc.dead:
                return
            try:
                proc.conn.send(msg)
            except (OSError, ValueError, EOFError):
                self._mark_dead(proc)

    def _forget(self, request_id: str) -> None:
        proc = self._current
        if proc is not None:
            proc.routes.pop(request_id, None)

    # -- the process ------------------------------------------------------------------------------
    def _ensure_started(self) -> _Process:
        current = self._current
        if current is not None and not current.dead and _alive(current):
            return current
        if current is not None:
            self._mark_dead(current)
        if self._remote is not None:
            return self._connect(self._remote)
        from . import process as inference_process  # no torch at import time

        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=inference_process.main,
            args=(child, self._settings),
            name="ftserve-inference",
            daemon=True,
        )
        process.start()
        child.close()  # so the parent sees EOF when the child dies
        proc = _Process(process, parent)
        self._current = proc
        threading.Thread(
            target=self._read, args=(proc,), name="ftserve-inference-reader", daemon=True
        ).start()
        log.info("inference process %s started", process.pid)
        return proc

    def _connect(self, url: str) -> _Process:
        from .remote import connect

        try:
            conn = connect(url, self._key)
        except multiprocessing.AuthenticationError:
            log.error(
                "inference server %s refused this server's key: start both with the same "
                "API keys (FTSERVE_API_KEYS or the same data dir)",
                url,
            )
            raise InferenceFailed(
                "The inference server refused this server's credentials; see the server log."
            ) from None
        except (OSError, EOFError) as exc:
            log.error("inference server %s not reachable: %s", url, exc)
            raise InferenceFailed(
                "The inference server is not reachable; try again later."
            ) from None
        proc = _Process(None, conn)
        self._current = proc
        threading.Thread(
            target=self._read, args=(proc,), name="ftserve-inference-reader", daemon=True
        ).start()
        log.info("connected to the inference server %s", url)
        return proc

    def _read(self, proc: _Process) -> None:
        while True:
            try:
                msg: FromInference = proc.conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # an unpicklable message: the channel is out of step
                log.exception("bad message from the inference process")
                break
            route = proc.routes.get(msg.request_id)
            if route is not None:
                if isinstance(msg, Rejected | Failed):
                    proc.routes.pop(msg.request_id, None)
                _deliver(route, msg)
        with self._lock:
            self._mark_dead(proc)
        with contextlib.suppress(OSError):
            proc.conn.close()

    def _mark_dead(self, proc: _Process) -> None:
        """Fail every request of ``proc`` and reap it (called with the lock held)."""
        if not proc.dead:
            proc.dead = True
            if not self._closed and proc.process is None:
                log.error(
                    "lost the inference server %s; %d request(s) failed; the next request "
                    "connects again",
                    self._remote,
                    len(proc.routes),
                )
            elif not self._closed and proc.process is not None:
                log.error(
                    "inference process %s stopped (exit code %s); %d request(s) failed; the next "
                    "request starts a new one",
                    proc.process.pid,
                    proc.process.exitcode,
                    len(proc.routes),
                )
        routes, proc.routes = proc.routes, {}
        for rid, route in routes.items():
            _deliver(
                route,
                Failed(rid, "The inference process stopped while serving this request; try again."),
            )
        # The reader thread closes the connection once it sees EOF.
        if proc.process is None:
            with contextlib.suppress(OSError):
                proc.conn.close()  # the reader sees it and ends
            if self._current is proc:
                self._current = None
            return
        if proc.process.is_alive():
            proc.process.terminate()
        threading.Thread(
            target=proc.process.join,
            args=(STOP_GRACE_SECONDS,),
            daemon=True,
            name="ftserve-inference-reap",
        ).start()
        if self._current is proc:
            self._current = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc = self._current
            if proc is None:
                return
            self._mark_dead(proc)
        if proc.process is None:
            return
        proc.process.join(STOP_GRACE_SECONDS)
        if proc.process.is_alive():
            proc.process.kill()
            proc.process.join(STOP_GRACE_SECONDS)


def _alive(proc: _Process) -> bool:
    return proc.process is None or proc.process.is_alive()


def engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        models_dir=str(settings.models_dir),
        device=settings.device,
        torch_threads=settings.inference_threads or settings.torch_threads,
        max_adapters=settings.max_adapters,
        memory_budget=settings.inference_memory,
        max_generation_tokens=settings.max_generation_tokens,
        blob_url=settings.blob_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        cache_dir=str(settings.cache_path),
    )


def build_client(settings: Settings) -> InferenceClient | None:
    """The server's inference client; None when inference is off."""
    if not settings.inference:
        return None
    if settings.inference_url:
        from .remote import authkey

        return InferenceClient(engine_settings(settings), settings.inference_url, authkey(settings))
    return InferenceClient(engine_settings(settings))
