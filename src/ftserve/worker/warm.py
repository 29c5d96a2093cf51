"""Spawned training processes kept ready, one per free slot, for a worker that cannot fork them.

A CPU worker forks each training process from a fork server that imported the training engine
once (preload.py). A GPU worker cannot: CUDA cannot be used in a process forked from one that
initialised it, so its training processes are spawned, and a spawned process spends ~7 s
importing torch, transformers and peft before it can load a model. So the worker spawns them
ahead of time: each imports the engine (without initialising CUDA, so the job's devices can
still be chosen by ``CUDA_VISIBLE_DEVICES`` when the job arrives) and waits. A claimed job is
handed to a ready one, which from then on is the job's training process (``child.main``),
supervised like any other; another is started for the next job.

The pool only ever holds processes that have no job: killing one loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from ..config import Settings

log = logging.getLogger("ftserve.worker")

# A child that dies before it is ready twice in a row means the engine cannot be imported here:
# stop spawning, and let each job start as a cold spawn (whose failure the job records).
MAX_FAILED_STARTS = 2


def wait_for_job(conn: Connection, settings: Settings, lifeline: Connection) -> None:
    """A warm child's life: import the engine, say so, wait for a job, train it.

    The job arrives as ``(job_id, token, rest)`` and runs as ``child.main(job_id, token,
    settings, lifeline, *rest)``; settings and the lifeline came with the spawn. An EOF instead
    (the worker closed its end, or died) ends the child with nothing to clean up."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    began = time.monotonic()
    import torch

    import ftserve.worker.preload  # noqa: F401 - the ~7 s this process exists to pay early

    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        # The job's devices could no longer be chosen: CUDA_VISIBLE_DEVICES is read once, at
        # CUDA's initialisation.
        conn.send(("unusable", "importing the training engine initialised CUDA"))
        return
    conn.send(("ready", f"engine imported in {time.monotonic() - began:.1f} s"))
    try:
        job_id, token, rest = conn.recv()
    except (EOFError, OSError):
        return
    conn.close()
    from . import child

    child.main(job_id, token, settings, lifeline, *rest)


@dataclass
class _Warm:
    process: BaseProcess
    conn: Connection
    ready: bool = False


class WarmPool:
    """The worker's spawned, imported, idle training processes.

    ``top_up`` (from the worker's loop) keeps one per free slot; ``hand`` gives a claimed job to
    a ready one. ``on_change`` is called from a watcher thread when a child becomes ready or
    fails, so the worker's loop wakes up to claim."""

    def __init__(
        self,
        ctx: SpawnContext,
        settings: Settings,
        lifeline: Connection,
        on_change: Callable[[], None],
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._lifeline = lifeline
        self._on_change = on_change
        self._lock = threading.Lock()
        self._children: list[_Warm] = []
        self._failed_starts = 0
        self.broken: str | None = None  # why warm children are not used any more
        self.handed: list[str] = []  # the jobs given to warm children, in order
        # Idle children wait on their pipe, which this process keeps open: kill them when it
        # exits without a close() (multiprocessing would otherwise wait for them forever).
        self._finalizer = weakref.finalize(self, _kill_all, self._children)

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for w in self._children if w.ready)

    def can_start_job(self) -> bool:
        """A claimed job can start now: a child is ready, or children are not used any more
        (a cold spawn is then the way, as slow as waiting)."""
        return self.broken is not None or self.ready_count() > 0

    def top_up(self, free_slots: int) -> None:
        """Start children until there is one (ready or importing) per free slot."""
        with self._lock:
            for warm in [w for w in self._children if w.ready and not w.process.is_alive()]:
                # Died while idle (e.g. the kernel's OOM killer): nothing of a job was lost.
                self._children.remove(warm)
                warm.process.join(timeout=0)
                warm.conn.close()
            missing = free_slots - len(self._children)
        if self.broken is not None:
            return
        for _ in range(missing):
            self._start()

    def _start(self) -> None:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=wait_for_job,
            args=(child_end, self._settings, self._lifeline),
            name="ftserve-train-warm",
            # Not a daemon: a daemon process may not start processes, and a training process
            # may (data loading, a job on several devices).
            daemon=False,
        )
        process.start()
        child_end.close()
        warm = _Warm(process, parent_end)
        with self._lock:
            self._children.append(warm)
        threading.Thread(
            target=self._watch, args=(warm,), name="ftserve-warm-watch", daemon=True
        ).start()

    def _watch(self, warm: _Warm) -> None:
        try:
            kind, detail = warm.conn.recv()
        except (EOFError, OSError):
            kind, detail = "died", None
            warm.conn.close()
        with self._lock:
            if kind == "ready":
                warm.ready = True
                self._failed_starts = 0
            elif warm in self._children:
                self._children.remove(warm)
                self._failed_starts += 1
                if kind == "unusable" or self._failed_starts >= MAX_FAILED_STARTS:
                    self.broken = str(detail or f"exit code {warm.process.exitcode}")
            else:
                return  # killed by close(): the worker is stopping
        if kind == "ready":
            log.info("warm training process %s ready (%s)", warm.process.pid, detail)
        elif self.broken is not None:
            log.error(
                "warm training processes are not usable (%s): each job starts a fresh process",
                self.broken,
            )
        else:
            log.warning("a warm training process ended before it was ready; starting another")
        self._on_change()

    def hand(self, args: tuple[object, ...]) -> BaseProcess | None:
        """Give a claimed job to a ready child: its process, now the job's; None when no child
        is ready. ``args`` are ``child.main``'s; its settings and lifeline must be the pool's
        (they travelled with the spawn)."""
        job_id, token, settings, lifeline, *rest = args
        if settings is not self._settings or lifeline is not self._lifeline:
            raise ValueError("a warm child runs with the settings and lifeline it was spawned with")
        while True:
            with self._lock:
                warm = next((w for w in self._children if w.ready), None)
                if warm is None:
                    return None
                self._children.remove(warm)
            try:
                warm.conn.send((job_id, token, tuple(rest)))
            except OSError:  # it died while idle: try the next one
                warm.process.join(timeout=0)
                continue
            finally:
                warm.conn.close()
            warm.process.name = f"ftserve-train-{job_id}"
            self.handed.append(str(job_id))
            return warm.process

    def close(self) -> None:
        """Stop the idle children (the worker is stopping)."""
        self._finalizer()


def _kill_all(children: list[_Warm]) -> None:
    victims = list(children)
    children.clear()  # first: their watchers then know the ends were wanted
    for warm in victims:
        if warm.process.is_alive():
            warm.process.kill()
        warm.process.join(timeout=5)
        if warm.ready:  # else its watcher is reading the pipe: the kill ends that, and it closes
            with contextlib.suppress(OSError):
                warm.conn.close()
