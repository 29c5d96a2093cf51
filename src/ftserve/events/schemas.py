"""The ``fine_tuning.job.event`` object and its list, declared once, and the list's query
parameters.

The event body is serialised once, when the event is written (:func:`ftserve.events.messages.
make_event`), and pages are joined from the stored bytes: that builder stays a literal on the
training hot path instead of going through :meth:`Shape.make`, and a test holds it to
:data:`EVENT`.
"""

from __future__ import annotations

from typing import Any

from ..wire.queries import Paging
from ..wire.shapes import STR, TIMESTAMP, Prop, Shape, components, const, list_shape
from .metrics import event_data_schema
from .rewards import step_data_schema

LEVELS = ("info", "warn", "error")
TYPES = ("message", "metrics")
PAGING = Paging("event", "Events", default_limit=20)

EVENT = Shape(
    "FineTuningJobEvent",
    [
        const("object", "fine_tuning.job.event"),
        Prop("id", {"type": "string", "pattern": "^ftevent-"}),
        Prop("created_at", TIMESTAMP),
        Prop("level", {"type": "string", "enum": list(LEVELS)}),
        Prop("message", STR),
        Prop(
            "data",
            {
                "anyOf": [
                    event_data_schema(),
                    step_data_schema(),
                    {"type": "object"},
                    {"type": "null"},
                ],
                "description": "A metrics event's data is the step's figures: a supervised or "
                "DPO job's losses (the first form), a reinforcement job's rewards (the second); "
                "other events carry null or an object of their own.",
            },
        ),
        Prop("type", {"type": "string", "enum": list(TYPES)}),
    ],
)
EVENT_LIST = list_shape("ListFineTuningJobEventsResponse", EVENT.name)


def schemas() -> dict[str, Any]:
    return components(EVENT, EVENT_LIST)
