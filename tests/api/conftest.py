"""What the tests of the two completion endpoints share: the model, a message, a plain HTTP
client on the ``server`` fixture, and the reading of a data-only SSE body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import API_KEY, Server

MODEL = "ftserve-tiny"
HELLO: Any = [{"role": "user", "content": "Hello there"}]
BEARER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=BEARER, timeout=60) as client:
        yield client


def sse_events(body: str) -> list[str]:
    """The data of each event; asserts the framing is data-only."""
    assert body.endswith("data: [DONE]\n\n"), body[-200:]
    events = body.split("\n\n")
    assert events[-1] == ""
    out = []
    for raw in events[:-1]:
        assert raw.startswith("data: ") and "\n" not in raw, raw
        out.append(raw[len("data: ") :])
    return out
