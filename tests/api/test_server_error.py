"""An unexpected failure is a 500 in the envelope, logged with its request id, no internals
in the body. Driven in-process through the ASGI app with a store that breaks."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from ftserve.api.app import create_app
from ftserve.api.services import build_services
from ftserve.config import ApiKey, Settings
from ftserve.store.sqlite import SqliteStore


class BrokenStore(SqliteStore):
    def list_jobs(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire: /secret/path")


def call(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(b"authorization", b"Bearer sk-test-key-123456")],
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_unexpected_failure_is_a_clean_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path, api_keys=(ApiKey("sk-test-key-123456", "personal"),), workers=0
    )
    app = create_app(
        settings, build_services(settings, BrokenStore(settings.sqlite_path)), background=False
    )
    with caplog.at_level(logging.ERROR, logger="ftserve.api"):
        status, headers, body = call(app, "/openai/v1/fine_tuning/jobs")
    assert status == 500
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "server_error"
    assert b"disk on fire" not in body and b"Traceback" not in body
    rid = headers[b"x-request-id"].decode()
    assert headers[b"apim-request-id"].decode() == rid and rid in err["message"]
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
