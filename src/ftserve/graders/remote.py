"""Judge models over HTTP, for graders run outside the API process (a training job's)."""

from __future__ import annotations

from typing import Any

import httpx

from .judge import Chat

TIMEOUT_SECONDS = 120.0


def chat_at(base_url: str, api_key: str | None) -> Chat:
    """A :data:`~.judge.Chat` that posts to ``{base_url}/chat/completions`` (an OpenAI-compatible
    server: this one, or one the operator configured); a failed call answers like a refused one,
    so the sample gets ``model_grader_server_error``."""
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def chat(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            answer = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            return 502, {"error": {"message": f"the judge at {base_url} failed: {exc}"}}
        try:
            parsed = answer.json()
        except ValueError:
            parsed = {}
        return answer.status_code, parsed if isinstance(parsed, dict) else {}

    return chat
