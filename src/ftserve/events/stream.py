"""The stream form of the events endpoint, declared once: its query parameter, the header it
resumes from, and the list parameters it refuses. The route checks requests against these and
the OpenAPI document (``ftserve.api.openapi``) is written from them.

``GET …/fine_tuning/jobs/{id}/events?stream=true`` — server-sent events, oldest first, each
event once; the server closes the stream after the job's terminal event (a paused job's stays
open). A client that reconnects sends ``Last-Event-ID: <the last id it got>`` and receives
exactly the events after it. ``after`` and ``limit`` page a list and mean nothing here: they
are refused (400 naming them) rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidValue
from ..params import query_choice

STREAM = "stream"
STREAM_VALUES = ("false", "true")  # exactly these spellings; anything else is a 400
LAST_EVENT_ID = "Last-Event-ID"
LIST_ONLY = ("after", "limit")  # list parameters refused with stream=true


def wants_stream(query: Mapping[str, str]) -> bool:
    return query_choice(query, STREAM, STREAM_VALUES, "false") == "true"


def check_stream_query(query: Mapping[str, str]) -> None:
    for name in LIST_ONLY:
        if name in query:
            raise InvalidValue(
                f"Invalid '{name}': not supported with 'stream=true'. A stream starts at the "
                f"job's first event, or after the event named by the {LAST_EVENT_ID} header.",
                param=name,
                code="unsupported_parameter",
            )


def last_event_id(headers: Mapping[str, str]) -> str | None:
    """The header's value; empty means none (an EventSource whose last id is empty)."""
    return headers.get(LAST_EVENT_ID.lower()) or None


def unknown_last_event_id(value: str, job_id: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{LAST_EVENT_ID}': {value[:128]!r} is not an event of fine-tuning job {job_id}.",
        param=LAST_EVENT_ID,
    )
