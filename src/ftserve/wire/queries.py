"""A list endpoint's paging parameters, declared once per list: the route reads ``after`` and
``limit`` through :class:`Paging` and the OpenAPI document describes them from it, bound and
default included.

The largest ``limit`` of most lists is a server setting (``FTSERVE_EVENTS_MAX_LIMIT``), so both
the check and the document take the running server's :class:`~ftserve.config.Settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..params import CURSOR_MAX_LENGTH, query_int, query_str

Json = dict[str, Any]
MIN_LIMIT = 1


@dataclass(frozen=True, slots=True)
class Paging:
    item: str  # what the list holds, in words ("event")
    component: str  # the prefix of its components.parameters ("Events": EventsAfter, …)
    default_limit: int
    max_limit: int | None = None  # None: the server's FTSERVE_EVENTS_MAX_LIMIT

    def maximum(self, settings: Settings) -> int:
        return settings.events_max_limit if self.max_limit is None else self.max_limit

    def limit(self, query: Mapping[str, str], settings: Settings) -> int:
        return query_int(
            query,
            "limit",
            default=self.default_limit,
            minimum=MIN_LIMIT,
            maximum=self.maximum(settings),
        )

    @staticmethod
    def after(query: Mapping[str, str]) -> str | None:
        return query_str(query, "after")

    def parameters(self, settings: Settings) -> Json:
        """``components.parameters``: ``<component>After`` and ``<component>Limit``."""
        what = self.item
        return {
            self.component + "After": {
                "name": "after",
                "in": "query",
                "required": False,
                "description": f"The id of the last {what} of the previous page; a value that "
                f"names no {what} of this list is a 400.",
                "schema": {"type": "string", "minLength": 1, "maxLength": CURSOR_MAX_LENGTH},
            },
            self.component + "Limit": {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": MIN_LIMIT,
                    "maximum": self.maximum(settings),
                    "default": self.default_limit,
                },
            },
        }
