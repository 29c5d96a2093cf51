"""The per-process fan-out behind ``GET …/events?stream=true``: one store read per new batch of
a job's events, however many streams follow that job in this process.

::

    Store.changes ──(one thread: ChangeFeed.wait)──► call_soon_threadsafe ──► EventHub._changed
                                                                                │ every watch
    _Watch(job) ──(one read: events after the last it saw)──► frames ──► each live Subscription
                                                                          (bounded queue)

A :class:`Subscription` is one stream's place in its job's log: the ``seq`` (the order every
event list follows) and id of the last event it sent. It is either *live* — at the watch's
position, fed from the watch's reads — or *behind*, reading the store from its own position:
on connecting (the replay after ``Last-Event-ID``, or of the whole log), and after its queue
overflowed because its client reads slower than events come. A behind subscription joins the
live ones when a read of its own comes back short and the watch is not ahead of it. Every
frame is sent only if its ``seq`` is past the last one sent, and reads are contiguous from the
last one sent, so an event is sent exactly once whichever way it arrives.

No lost wake-ups: a subscription registers with its watch before its first read, so a change
committed after that read marks the watch dirty, and the watch reads when the subscription
joins. The thread waits on the feed only while some job is watched. The change feed of SQLite
counts other processes' commits only from when somebody waits on it, so each time the thread
starts waiting it wakes every watch twice more, shortly after (a commit between a stream's
first read and the feed's first look is read then). A spurious wake-up costs one read per
watched job.

The stream ends after the job's terminal event: a read that finds the job final (its status is
read before its events, and no event follows the terminal one) and a short page has reached the
end of the log. A paused job is not final: its stream stays open for the resume.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from ..jobs.states import FINAL
from ..store.protocol import Store
from ..store.records import EventsAfter, LoggedEvent
from .sse import PING, message

log = logging.getLogger("ftserve.events")

PAGE = 256  # events per store read
QUEUE_LIMIT = 1024  # frames a live subscription may hold unsent before it falls behind
_IDLE_WAIT = 5.0  # seconds the feed thread waits between checks for a close
_RECHECKS = (0.05, 0.5)  # extra wake-ups after the feed thread starts (see the docstring)
_RETRY = 1.0  # seconds before a watch reads again after the store failed


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    id: str
    data: bytes  # the whole SSE message


def frame(event: LoggedEvent) -> Frame:
    return Frame(event.seq, event.id, message(event.id, event.body))


class EventHub:
    def __init__(self, store: Store, *, page: int = PAGE, queue_limit: int = QUEUE_LIMIT) -> None:
        self._store = store
        self.page = page
        self.queue_limit = queue_limit
        self._watches: dict[str, _Watch] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._watching = threading.Condition()  # the feed thread sleeps on it while idle
        self._posted = False
        self.ending = False  # the server is shutting down: streams end after what they hold
        # Diagnostics (and tests): subscriptions that fell behind because their queue was full.
        self.overflows = 0

    # -- reads -------------------------------------------------------------------------------
    async def read(
        self, organization: str | None, job_id: str, after: str | None
    ) -> EventsAfter | None:
        """One store read, off the event loop (a PostgreSQL read is a round trip; a replay of a
        long log is many pages)."""
        return await asyncio.to_thread(
            self._store.events_after, organization, job_id, after=after, limit=self.page
        )

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, job_id: str) -> Subscription:
        """A subscription to ``job_id``'s events, registered before its first read (which the
        caller makes: it also tells an unknown job or cursor); close it when done."""
        self._loop = asyncio.get_running_loop()
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(
                target=self._wait_for_changes, name="ftserve-event-hub", daemon=True
            )
            self._thread.start()
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch(self, job_id)
            with self._watching:
                self._watching.notify()
        sub = Subscription(self, watch)
        watch.subs.add(sub)
        return sub

    def _drop(self, watch: _Watch) -> None:
        if self._watches.get(watch.job_id) is watch:
            del self._watches[watch.job_id]
        watch.stop()

    def watched(self) -> int:
        """Jobs with at least one open stream in this process."""
        return len(self._watches)

    # -- wake-ups ----------------------------------------------------------------------------
    def _wait_for_changes(self) -> None:
        changes = self._store.changes
        while not self._closed.is_set():
            # Nothing watched: no waiting on the feed either (SQLite's watch of other
            # processes' commits runs only while somebody waits).
            with self._watching:
                while not self._watches and not self._closed.is_set():
                    self._watching.wait()
            seen = changes.version()
            rechecks = list(_RECHECKS)
            while self._watches and not self._closed.is_set():
                timeout = rechecks.pop(0) if rechecks else _IDLE_WAIT
                now = changes.wait(seen, timeout)
                if now != seen or timeout in _RECHECKS:
                    seen = now
                    self._post()

    def _post(self) -> None:
        loop = self._loop
        if self._posted or loop is None:
            return
        self._posted = True  # one pending call is enough: it wakes every watch
        try:
            loop.call_soon_threadsafe(self._changed)
        except RuntimeError:  # the loop is closed: the process is ending
            self._closed.set()

    def _changed(self) -> None:
        self._posted = False
        for watch in list(self._watches.values()):
            watch.wake()

    def end_streams(self) -> None:
        """End every stream of this process once it has sent what it holds, and any opened
        from now on after its replay: the server is shutting down, and a stream of a paused
        or queued job would hold the shutdown forever. Clients reconnect with Last-Event-ID
        and miss nothing."""
        self.ending = True
        for watch in list(self._watches.values()):
            for sub in list(watch.subs):
                sub.finish()

    async def aclose(self) -> None:
        """End every stream of this process and the feed thread (the app's shutdown)."""
        self._closed.set()
        self.end_streams()
        thread = self._thread
        if thread is not None:
            with self._watching:
                self._watching.notify()
            self._store.changes.poke()
            await asyncio.to_thread(thread.join, 2.0)


class _Watch:
    """One job watched by this process: reads what follows the last event it handed on."""

    def __init__(self, hub: EventHub, job_id: str) -> None:
        self.hub = hub
        self.job_id = job_id
        self.subs: set[Subscription] = set()
        self.live: set[Subscription] = set()
        self.seq = 0
        self.id: str | None = None
        self.final = False  # the log ends at seq
        self.dirty = False  # the store may have changed since the last read
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.dirty = True
        self.kick()

    def kick(self) -> None:
        if self._task is None and self.dirty and self.live and not self.final:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            while self.dirty and self.live and not self.final:
                self.dirty = False
                try:
                    result = await self.hub.read(None, self.job_id, self.id)
                except Exception as exc:
                    log.warning("event stream of %s: the store read failed: %s", self.job_id, exc)
                    self.dirty = True
                    await asyncio.sleep(_RETRY)
                    continue
                if result is None:  # the job is gone (no API deletes one): nothing will follow
                    self.final = True
                    for sub in list(self.live):
                        sub.finish()
                    return
                self._hand_on(result)
        finally:
            self._task = None

    def _hand_on(self, result: EventsAfter) -> None:
        fresh = [frame(e) for e in result.events if e.seq > self.seq]
        if fresh:
            self.seq, self.id = fresh[-1].seq, fresh[-1].id
            for sub in list(self.live):
                sub.offer(fresh)
        if len(result.events) >= self.hub.page:
            self.dirty = True  # more to read
        elif result.status in FINAL:
            self.final = True
            for sub in list(self.live):
                sub.finish()


class Subscription:
    """One stream's place in its job's log (see the module docstring)."""

    def __init__(self, hub: EventHub, watch: _Watch) -> None:
        self._hub = hub
        self._watch = watch
        self.seq = 0
        self.id: str | None = None
        self._pending: deque[Frame] = deque()
        self._live = False
        self._finished = False
        self._closed = False
        self._wake = asyncio.Event()

    # -- called by the watch -----------------------------------------------------------------
    def offer(self, frames: list[Frame]) -> None:
        if len(self._pending) + len(frames) > self._hub.queue_limit:
            # The client reads slower than events come: stop queueing for it; it reads the
            # store from its last sent event once it has sent what it holds.
            self._live = False
            self._watch.live.discard(self)
            self._hub.overflows += 1
        else:
            self._pending.extend(frames)
        self._wake.set()

    def finish(self) -> None:
        self._finished = True
        self._wake.set()

    # -- the stream --------------------------------------------------------------------------
    def stream(self, first: EventsAfter, after: str | None, heartbeat: float) -> SubscriptionStream:
        """The chunks to send, starting with ``first``: the caller's first read, of the events
        after ``after`` (the client's Last-Event-ID)."""
        if after is not None:
            self.seq, self.id = first.after_seq, after
        return SubscriptionStream(self, self._frames(first, heartbeat))

    async def _frames(self, first: EventsAfter, heartbeat: float) -> AsyncIterator[bytes]:
        result: EventsAfter | None = first
        while not self._closed:
            if result is not None:
                chunk, ended = self._consume(result)
                result = None
                if chunk:
                    yield chunk
                if ended:
                    return
            elif self._pending:
                chunk = self._take(self._pending)
                self._pending.clear()
                if chunk:
                    yield chunk
            elif self._finished or self._hub.ending:
                return
            elif not self._live:
                result = await self._hub.read(None, self._watch.job_id, self.id)
                if result is None:
                    return
            else:
                self._wake.clear()
                try:
                    async with asyncio.timeout(heartbeat):
                        await self._wake.wait()
                except TimeoutError:
                    yield PING

    def _take(self, frames: Iterable[Frame]) -> bytes:
        out = []
        for f in frames:
            if f.seq > self.seq:
                out.append(f.data)
                self.seq, self.id = f.seq, f.id
        return b"".join(out)

    def _consume(self, result: EventsAfter) -> tuple[bytes, bool]:
        """Take one read of its own; returns the chunk to send and whether the log ended."""
        chunk = self._take(frame(e) for e in result.events)
        if len(result.events) >= self._hub.page:
            return chunk, False  # read on
        if result.status in FINAL:
            return chunk, True
        self._join()
        return chunk, False

    def _join(self) -> None:
        """After a short read: become live unless the watch is ahead (then read again)."""
        w = self._watch
        if w.final:
            if self.seq >= w.seq:
                self._finished = True
            return
        if not w.live:
            w.seq, w.id = self.seq, self.id  # nobody else follows: the watch starts here
        elif w.seq > self.seq:
            return
        elif w.seq < self.seq:
            w.dirty = True  # the store is ahead of the watch: it reads now
        self._live = True
        w.live.add(self)
        w.kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._live = False
        w = self._watch
        w.live.discard(self)
        w.subs.discard(self)
        if not w.subs:
            self._hub._drop(w)


class SubscriptionStream:
    """The chunks of one stream; closing it (even unstarted) closes its subscription."""

    def __init__(self, sub: Subscription, frames: AsyncIterator[bytes]) -> None:
        self._sub = sub
        self._frames = frames

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._sub.close()
