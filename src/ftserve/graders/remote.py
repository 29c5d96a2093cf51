"""Judge models over HTTP, for graders run outside the API process (a training job's, on this
machine or another): an OpenAI-compatible ``/chat/completions``. By default that is this
server's own API, as the job's organization (its key from ``FTSERVE_API_KEYS``, else the data
dir's generated key), so a judge is any model the organization may use, as on the run endpoint.
``FTSERVE_JUDGE_URL`` (with ``FTSERVE_JUDGE_API_KEY``) sends them elsewhere instead: a vLLM
server, or this API's address when workers run on other machines.

A failed call answers as :func:`.judge.grade` expects, a status and an OpenAI error body, so
the sample gets ``model_grader_server_error`` with the reason; it never raises."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx2

from ..config import API_KEY_FILE, Settings, parse_api_keys
from ..setting import ConfigError
from .judge import Chat

Json = dict[str, Any]

# A judge on CPU may take a while to answer; connecting should not.
TIMEOUT = httpx2.Timeout(300.0, connect=10.0)
# The status of a call that got no HTTP answer (nginx's convention: not a real one).
NO_ANSWER = 599


def default_url(settings: Settings) -> str:
    """This server's own API, as seen from this machine."""
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"http://{host}:{settings.port}/v1"


def _organization_key(settings: Settings, organization: str) -> str | None:
    keys = settings.api_keys
    stored = settings.data_dir / API_KEY_FILE
    if not keys and stored.is_file():
        # A worker started without FTSERVE_API_KEYS beside the server that generated its key.
        try:
            keys = parse_api_keys(stored.read_text().strip(), name=str(stored))
        except (OSError, ConfigError):
            keys = ()
    return next((k.key for k in keys if k.organization == organization), None)


def endpoint(settings: Settings, organization: str) -> tuple[str, str | None]:
    """Where ``organization``'s jobs ask their judges, and with which key."""
    if settings.judge_url:
        return settings.judge_url, settings.judge_api_key
    return default_url(settings), settings.judge_api_key or _organization_key(
        settings, organization
    )


def _failure(status: int, message: str) -> tuple[int, Json]:
    return status, {"error": {"message": message, "type": "server_error"}}


def chat_at(base_url: str, api_key: str | None) -> Chat:
    """A :data:`~.judge.Chat` that posts to ``{base_url}/chat/completions``; callable from any
    thread (each call is a request of its own, so nothing is left to close)."""
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def chat(body: Json) -> tuple[int, Json]:
        try:
            answer = httpx2.post(url, json=body, headers=headers, timeout=TIMEOUT)
        except httpx2.HTTPError as e:
            return _failure(NO_ANSWER, f"the judge at {url} did not answer: {e!r}")
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            status = answer.status_code
            return _failure(status, f"HTTP {status} from {url}: {answer.text[:200]}")
        return answer.status_code, parsed

    return chat


def http_chat(settings: Settings, organization: str) -> Chat:
    """The judge of ``organization``'s jobs, for a process that is not the API's."""
    url, key = endpoint(settings, organization)
    if key is None and not settings.judge_url:
        missing = (
            f"no API key of organization {organization!r} to call this server's judges with: "
            "set FTSERVE_API_KEYS on the worker (or FTSERVE_JUDGE_URL and FTSERVE_JUDGE_API_KEY)"
        )
        return lambda body: _failure(401, missing)
    return chat_at(url, key)
