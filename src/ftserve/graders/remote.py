"""Judges for processes other than the API's: a training process (on this machine or another)
grades with ``score_model``/``label_model`` through an OpenAI-compatible ``/chat/completions``
over HTTP. By default that is this server's own API, as the job's organization (its key from
``FTSERVE_API_KEYS``, else the data dir's generated key), so a judge is any model the
organization may use, as on the run endpoint. ``FTSERVE_JUDGE_URL`` (with
``FTSERVE_JUDGE_API_KEY``) sends them elsewhere instead: a vLLM server, or this API's address
when workers run on other machines.

A failed call answers as :func:`.judge.grade` expects, a status and an OpenAI error body, so
the sample gets ``model_grader_server_error`` with the reason; it never raises."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx2

from ..config import API_KEY_FILE, Settings, parse_api_keys
from ..setting import ConfigError

Json = dict[str, Any]

# A judge on CPU may take a while to answer; connecting should not.
TIMEOUT = httpx2.Timeout(300.0, connect=10.0)
# The status of a call that got no HTTP answer (as nginx's 499/599 convention: not a real one).
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


def _key(settings: Settings, organization: str) -> str | None:
    if settings.judge_api_key:
        return settings.judge_api_key
    keys = settings.api_keys
    stored = settings.data_dir / API_KEY_FILE
    if not keys and stored.is_file():
        # A worker started without FTSERVE_API_KEYS beside the server that generated its key.
        try:
            keys = parse_api_keys(stored.read_text().strip(), name=str(stored))
        except (OSError, ConfigError):
            keys = ()
    return next((k.key for k in keys if k.organization == organization), None)


def _failure(status: int, message: str) -> tuple[int, Json]:
    return status, {"error": {"message": message, "type": "server_error"}}


class HttpChat:
    """A :data:`.judge.Chat` over HTTP; one connection pool, closed with :meth:`close`."""

    def __init__(self, url: str, api_key: str | None, missing_key: str | None = None) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.missing_key = missing_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx2.Client(headers=headers, timeout=TIMEOUT)

    def __call__(self, body: Json) -> tuple[int, Json]:
        if self.missing_key is not None:
            return _failure(401, self.missing_key)
        try:
            answer = self.http.post(self.url, json=body)
        except httpx2.HTTPError as e:
            return _failure(NO_ANSWER, f"the judge at {self.url} did not answer: {e!r}")
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            status = answer.status_code
            return _failure(status, f"HTTP {status} from {self.url}: {answer.text[:200]}")
        return answer.status_code, parsed

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_chat(settings: Settings, organization: str) -> HttpChat:
    """The judge of ``organization``'s jobs, for a process that is not the API's."""
    url = settings.judge_url or default_url(settings)
    key = _key(settings, organization)
    missing = None
    if key is None and settings.judge_url is None:
        missing = (
            f"no API key of organization {organization!r} to call this server's judges with: "
            "set FTSERVE_API_KEYS on the worker (or FTSERVE_JUDGE_URL and FTSERVE_JUDGE_API_KEY)"
        )
    return HttpChat(url, key, missing)
