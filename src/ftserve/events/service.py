"""Listing a job's events: the seed endpoint's logic, kept thin because it is the hot path; and
opening its live stream (through this process's :class:`~ftserve.events.hub.EventHub`)."""

from __future__ import annotations

from ..errors import InvalidValue, JobNotFound
from ..store.protocol import AsyncEventReads, Store, UnknownCursor
from .hub import EventHub, SubscriptionStream
from .stream import unknown_last_event_id

_HEAD = b'{"object":"list","data":['
_TAIL_MORE = b'],"has_more":true}'
_TAIL_END = b'],"has_more":false}'


class EventService:
    def __init__(self, store: Store, *, async_reads: bool = True) -> None:
        self._store = store
        # A store with a network round trip per read (PostgreSQL) pages on the event loop
        # without blocking it; SQLite keeps the inline read. Decided once, here.
        self._async: AsyncEventReads | None = (
            store if async_reads and isinstance(store, AsyncEventReads) else None
        )
        self.hub = EventHub(store)

    @property
    def awaits_store(self) -> bool:
        """True when pages come from :meth:`page_json_async` (the store reads asynchronously)."""
        return self._async is not None

    def page_json(self, organization: str, job_id: str, after: str | None, limit: int) -> bytes:
        """One page, newest first, already serialised: the stored bodies joined in the envelope."""
        try:
            page = self._store.event_page(organization, job_id, after=after, limit=limit)
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': {after!r} is not an event of fine-tuning job {job_id}.",
                param="after",
            ) from None
        if page is None:
            raise JobNotFound(job_id)
        return _HEAD + b",".join(page.items) + (_TAIL_MORE if page.has_more else _TAIL_END)

    async def page_json_async(
        self, organization: str, job_id: str, after: str | None, limit: int
    ) -> bytes:
        """:meth:`page_json` on the store's async read (only when :attr:`awaits_store`)."""
        assert self._async is not None
        try:
            joined = await self._async.event_page_async(
                organization, job_id, after=after, limit=limit
            )
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': {after!r} is not an event of fine-tuning job {job_id}.",
                param="after",
            ) from None
        if joined is None:
            raise JobNotFound(job_id)
        return _HEAD + joined.body + (_TAIL_MORE if joined.has_more else _TAIL_END)

    async def stream(
        self, organization: str, job_id: str, last_event_id: str | None, heartbeat: float
    ) -> SubscriptionStream:
        """The live stream of a job's events after ``last_event_id`` (from the first when
        None). An unknown job or Last-Event-ID raises here, before anything is sent."""
        sub = self.hub.subscribe(job_id)
        try:
            first = await self.hub.read(organization, job_id, last_event_id)
        except UnknownCursor:
            sub.close()
            raise unknown_last_event_id(str(last_event_id), job_id) from None
        except BaseException:
            sub.close()
            raise
        if first is None:
            sub.close()
            raise JobNotFound(job_id)
        return sub.stream(first, last_event_id, heartbeat)

    async def aclose(self) -> None:
        """End the live streams, and close the store's async read pool on the loop that used
        it (the app's lifespan)."""
        await self.hub.aclose()
        if self._async is not None:
            await self._async.close_async_reads()
