"""``metadata``: up to 16 string pairs, the same bounds on every endpoint that takes it (job
creation stores it; chat completions accept and ignore it). Each endpoint words its refusals as
OpenAI's does there, from these bounds."""

from __future__ import annotations

from typing import Any

MAX_PAIRS = 16
KEY_MAX_LENGTH = 64
VALUE_MAX_LENGTH = 512

SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": MAX_PAIRS,
    "propertyNames": {"maxLength": KEY_MAX_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": VALUE_MAX_LENGTH},
}
