"""Where the user commands find the API, and how their failures reach the terminal.

The URL and the key are resolved separately, each from the first of: the ``--base-url`` /
``--api-key`` flag, ``FTSERVE_BASE_URL`` / ``FTSERVE_API_KEY``, ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``, and then the local server as ``ftserve serve`` in this directory would run
it: ``http://127.0.0.1:8000/v1`` (``FTSERVE_HOST`` / ``FTSERVE_PORT`` moved) and its key
(``FTSERVE_API_KEYS``, else ``ftserve-data/api_key``, ``FTSERVE_DATA_DIR`` moved).

Every command runs under :func:`run`, which turns the SDK's exceptions into one line on stderr
and an exit status: people see the server's own message, never a traceback.

The user commands' modules import ``openai`` and ``rich`` inside their handlers, not at the top:
``ftserve serve``, ``ftserve worker`` and every training child (spawned, it imports the CLI
module again) build this parser too, and the SDK alone takes about a second to import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import API_KEY_FILE, ConfigError, parse_api_keys

if TYPE_CHECKING:
    import openai

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure the user can act on; its text is printed as is, with exit status 1."""


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str
    key_source: str  # where the key came from, named in the hint of a 401

    def client(self) -> openai.OpenAI:
        import openai

        # One retry: a blip is absorbed, while an unreachable server is said quickly.
        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=1)

    def headers(self) -> dict[str, str]:
        """What the SDK would send, for the requests it has no method for (the event stream)."""
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": "ftserve-cli"}


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        help="API base URL (default: FTSERVE_BASE_URL, OPENAI_BASE_URL, else the local server "
        "http://127.0.0.1:8000/v1)",
    )
    group.add_argument(
        "--api-key",
        help="API key (default: FTSERVE_API_KEY, OPENAI_API_KEY, else the local server's "
        "ftserve-data/api_key)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a human summary"
    )


def _local_base_url(env: dict[str, str]) -> str:
    host = env.get("FTSERVE_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: reachable on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{env.get('FTSERVE_PORT') or '8000'}/v1"


def _local_key(env: dict[str, str]) -> tuple[str, str] | None:
    """The key ``ftserve serve`` with this environment would accept, as it chooses one."""
    try:
        if env.get("FTSERVE_API_KEYS"):
            keys = parse_api_keys(env["FTSERVE_API_KEYS"])
            if keys:
                return keys[0].key, "FTSERVE_API_KEYS"
        path = Path(env.get("FTSERVE_DATA_DIR") or "./ftserve-data") / API_KEY_FILE
        if path.is_file():
            keys = parse_api_keys(path.read_text().strip(), name=str(path))
            if keys:
                return keys[0].key, str(path)
    except (ConfigError, OSError) as exc:
        raise CliError(f"cannot read the local API key: {exc}") from None
    return None


def connection(args: argparse.Namespace, env: dict[str, str] | None = None) -> Connection:
    env = dict(os.environ) if env is None else env
    base_url = (
        args.base_url
        or env.get("FTSERVE_BASE_URL")
        or env.get("OPENAI_BASE_URL")
        or _local_base_url(env)
    ).rstrip("/")
    if args.api_key:
        key, source = args.api_key, "--api-key"
    elif env.get("FTSERVE_API_KEY"):
        key, source = env["FTSERVE_API_KEY"], "FTSERVE_API_KEY"
    elif env.get("OPENAI_API_KEY"):
        key, source = env["OPENAI_API_KEY"], "OPENAI_API_KEY"
    else:
        local = _local_key(env)
        if local is None:
            raise CliError(
                "no API key: set FTSERVE_API_KEY (or pass --api-key), or run this where "
                "`ftserve serve` keeps its data (ftserve-data/api_key, or FTSERVE_DATA_DIR)"
            )
        key, source = local
    return Connection(base_url=base_url, api_key=key, key_source=source)


def status_error_text(exc: openai.APIStatusError, conn: Connection | None = None) -> str:
    """The server's message from the OpenAI error envelope, with its param and code."""
    body: Any = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = (exc.response.text or exc.response.reason_phrase).strip()[:500]
    details = [f"HTTP {exc.status_code}"]
    if isinstance(error, dict):
        details += [f"{k}: {error[k]}" for k in ("param", "code") if error.get(k)]
    text = f"{message} ({', '.join(details)})"
    if exc.status_code == 401 and conn is not None:
        text += f"\nftserve: the API key came from {conn.key_source}"
    return text


def unreachable_text(base_url: str) -> str:
    return f"cannot reach the ftserve API at {base_url} — is `ftserve serve` running?"


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Runs one command; every failure becomes a line on stderr and an exit status."""
    import openai

    conn: Connection | None = None
    try:
        conn = connection(args)
        args.conn = conn
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (head, less) went away: nothing more to say, and nowhere to say it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except CliError as exc:
        _say(str(exc))
    except openai.APITimeoutError:
        _say(f"the ftserve API at {conn.base_url if conn else '?'} did not answer in time")
    except openai.APIConnectionError:
        _say(unreachable_text(conn.base_url if conn else "?"))
    except openai.APIStatusError as exc:
        _say(status_error_text(exc, conn))
    except openai.OpenAIError as exc:
        _say(str(exc))
    return EXIT_ERROR


def _say(text: str) -> None:
    print(f"ftserve: {text}", file=sys.stderr, flush=True)


def print_json(value: Any, *, compact: bool = False) -> None:
    if compact:
        print(json.dumps(value, ensure_ascii=False, separators=(",", ":")), flush=True)
    else:
        print(json.dumps(value, ensure_ascii=False, indent=2), flush=True)


def raw(model: Any) -> Any:
    """An SDK object as the API sent it: only the fields the response held, extras included."""
    # warnings off: a lenient SDK model holding a value outside its Literal (status "paused")
    # is still what the API sent, and a serializer warning would only garble the output.
    return model.to_dict(mode="json", warnings=False)
