"""Listing a job's events: the seed endpoint's logic, kept thin because it is the hot path."""

from __future__ import annotations

from ..errors import InvalidValue, JobNotFound
from ..store.protocol import Store, UnknownCursor

_HEAD = b'{"object":"list","data":['
_TAIL_MORE = b'],"has_more":true}'
_TAIL_END = b'],"has_more":false}'


class EventService:
    def __init__(self, store: Store) -> None:
        self._store = store

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
