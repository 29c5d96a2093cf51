"""Stored responses: kept per organization for FTSERVE_RESPONSES_TTL_DAYS, then gone as if
deleted. Another organization's response is missing, never forbidden: its id says nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequest, InvalidValue, NotFound
from ..store.protocol import Store
from ..store.records import ResponseRecord

Json = dict[str, Any]
DAY = 86_400


def not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def previous_not_found(response_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


@dataclass(frozen=True, slots=True)
class Stored:
    response: Json
    items: list[Json]  # the input items it answered, oldest first

    def conversation(self) -> list[Json]:
        """What a response continuing this one comes after: its input, then its output."""
        return [*self.items, *self.response["output"]]


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[Json]
    has_more: bool


class ResponseService:
    def __init__(self, store: Store, ttl_days: int) -> None:
        self._store = store
        self._ttl = ttl_days * DAY

    def save(self, organization: str, response: Json, items: list[Json]) -> None:
        now = int(time.time())
        self._store.add_response(
            ResponseRecord(
                id=response["id"],
                organization=organization,
                created_at=response["created_at"],
                expires_at=now + self._ttl,
                body=orjson.dumps(response).decode(),
                items=orjson.dumps(items).decode(),
            ),
            now,
        )

    def find(self, organization: str, response_id: str) -> Stored | None:
        record = self._store.get_response(organization, response_id, int(time.time()))
        if record is None:
            return None
        return Stored(orjson.loads(record.body), orjson.loads(record.items))

    def get(self, organization: str, response_id: str) -> Stored:
        stored = self.find(organization, response_id)
        if stored is None:
            raise not_found(response_id)
        return stored

    def delete(self, organization: str, response_id: str) -> None:
        if not self._store.delete_response(organization, response_id, int(time.time())):
            raise not_found(response_id)

    def input_items(
        self, organization: str, response_id: str, *, after: str | None, limit: int, order: str
    ) -> ItemPage:
        items = self.get(organization, response_id).items
        if order == "desc":
            items = items[::-1]
        if after is not None:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise InvalidValue(
                    f"Invalid 'after': no input item {after!r} of this response to page from.",
                    param="after",
                )
            items = items[ids.index(after) + 1 :]
        return ItemPage(items[:limit], len(items) > limit)
