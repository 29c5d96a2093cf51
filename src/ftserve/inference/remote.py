"""Inference on its own: ``ftserve inference`` serves the inference process's protocol on a
socket, and an API server with ``FTSERVE_INFERENCE_URL`` sends its requests there instead of
spawning an inference process of its own.

The channel is the same ``multiprocessing`` connection as with a spawned process (pickled
:mod:`ftserve.inference.protocol` messages), opened with an HMAC challenge on a key both sides
derive from the service's API keys, so only a peer that holds them can connect; pickles come
only from such a peer. Fine-tuned weights are named by where they lie: on a remote blob store
(S3) by location, fetched by this process into its own cache, so it needs the same
FTSERVE_BLOB_URL; on a directory store by path, so both machines must see it at the same path
(a shared filesystem).

One API server is served at a time: a second connection waits until the first closes. A
connection that closes (the API server stopped or restarted) leaves the process serving the
next one; models stay loaded between connections.
"""

from __future__ import annotations

import hashlib
import logging
from multiprocessing.connection import Client, Connection, Listener

from ..config import Settings

log = logging.getLogger("ftserve.inference")

Address = str | tuple[str, int]


class BadAddress(ValueError):
    pass


def parse_address(url: str) -> tuple[Address, str]:
    """``unix:/path`` or ``HOST:PORT`` (``tcp://`` prefix allowed) → (address, family)."""
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        if not path:
            raise BadAddress(f"{url!r}: unix: needs a socket path")
        return path, "AF_UNIX"
    rest = url.removeprefix("tcp://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadAddress(f"{url!r}: expected HOST:PORT or unix:PATH")
    return (host.strip("[]"), int(port)), "AF_INET6" if ":" in host else "AF_INET"


def authkey(settings: Settings) -> bytes:
    keys = sorted(k.key for k in settings.api_keys)
    if not keys:
        raise BadAddress("no API keys: the inference channel's key is derived from them")
    return hashlib.sha256(b"ftserve-inference\0" + "\0".join(keys).encode()).digest()


def connect(url: str, key: bytes) -> Connection:
    address, family = parse_address(url)
    return Client(address, family=family, authkey=key)


def serve(settings: Settings, url: str) -> None:
    from .client import engine_settings
    from .process import main as serve_connection

    address, family = parse_address(url)
    engine = engine_settings(settings)
    with Listener(address, family=family, authkey=authkey(settings)) as listener:
        print(f"ftserve inference: listening on {url}", flush=True)
        while True:
            try:
                conn = listener.accept()
            except (OSError, EOFError) as exc:  # a peer without the key, or one that left
                log.warning("inference connection refused: %s", exc)
                continue
            log.info("an API server connected from %s", listener.last_accepted)
            with conn:
                serve_connection(conn, engine)
            log.info("the API server disconnected")
