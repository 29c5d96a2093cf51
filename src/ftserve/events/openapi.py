"""The events endpoint in the OpenAPI document: the list from :mod:`.schemas`, the stream form
from its declaration in :mod:`.stream`, the heartbeat from the server's settings."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..params import CURSOR_MAX_LENGTH
from ..wire.operations import errors, ok, op, param
from . import stream
from .schemas import EVENT_LIST, PAGING

Json = dict[str, Any]


def parameters(settings: Settings) -> Json:
    return PAGING.parameters(settings)


def _stream_params() -> list[Json]:
    refused = " and ".join(f"`{name}`" for name in stream.LIST_ONLY)
    return [
        {
            "name": stream.STREAM,
            "in": "query",
            "required": False,
            "description": "`true`: the job's events as server-sent events (`text/event-stream`)"
            f", oldest first, each once, the stream closed after the job's terminal event (a "
            f"paused job's stays open); {refused} are then refused (400 naming them). Other "
            "values than `true` and `false` are a 400.",
            "schema": {
                "type": "string",
                "enum": list(stream.STREAM_VALUES),
                "default": "false",
            },
        },
        {
            "name": stream.LAST_EVENT_ID,
            "in": "header",
            "required": False,
            "description": "With `stream=true`: resume after this event (the `id:` of the last "
            "message received). A value that names no event of this job is a 400 naming "
            f"`{stream.LAST_EVENT_ID}`; an empty one means none. Ignored without "
            "`stream=true`.",
            "schema": {"type": "string", "maxLength": CURSOR_MAX_LENGTH},
        },
    ]


def _events_ok(settings: Settings) -> Json:
    page = ok(EVENT_LIST.name, "A page of events.")
    page["description"] = (
        "A page of events; with `stream=true`, a stream of server-sent events: for each event "
        "`id: <event id>` and `data: <the event, exactly as a page holds it>`, then a blank "
        f"line; a `: ping` comment every {settings.events_heartbeat:g} s while nothing happens "
        "(`FTSERVE_EVENTS_HEARTBEAT`). Errors come before the stream starts, as JSON."
    )
    page["content"] = {
        **page["content"],
        # One server-sent event: ``id`` names the event, ``data`` holds its JSON.
        "text/event-stream": {
            "schema": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "data": {"type": "string"}},
                "required": ["id", "data"],
            }
        },
    }
    return page


def paths(settings: Settings) -> Json:
    return {
        "/fine_tuning/jobs/{fine_tuning_job_id}/events": {
            "parameters": [param("JobId")],
            "get": op(
                "listFineTuningEvents",
                "Fine-tuning",
                "A job's events, newest first; with `stream=true`, live, oldest first.",
                {"200": _events_ok(settings), **errors(400, 401, 404)},
                parameters=[param("EventsAfter"), param("EventsLimit"), *_stream_params()],
            ),
        },
    }
