"""ftserve's own OpenAPI 3 document, served at /openapi.json."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import orjson


@functools.cache
def openapi_document() -> dict[str, Any]:
    raw = resources.files("ftserve.api").joinpath("openapi.json").read_bytes()
    doc: dict[str, Any] = orjson.loads(raw)
    return doc
