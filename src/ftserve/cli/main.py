"""The ``ftserve`` command: ``serve`` runs the API (and, from the training issue on, workers);
``files``, ``jobs``, ``models`` and ``chat`` are its clients, for people (see client.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import (
    API_KEY_FILE,
    ConfigError,
    Settings,
    ensure_api_keys,
    settings_from_env,
    validate_paths,
)
from . import chat_cmd, files_cmd, jobs_cmd, models_cmd
from .client import run as run_user_command
from .flags import add_setting_flags, settings_with_flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftserve",
        description="Self-hosted fine-tuning service speaking the OpenAI fine-tuning API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parser.add_argument("--version", action="version", version=f"ftserve {__version__}")
    serve = sub.add_parser("serve", help="run the API server on the embedded store")
    inference = sub.add_parser(
        "inference",
        help="run the inference process alone, for API servers started with FTSERVE_INFERENCE_URL",
    )
    inference.add_argument(
        "--listen", default="127.0.0.1:8001", help="HOST:PORT or unix:PATH (default 127.0.0.1:8001)"
    )
    worker = sub.add_parser("worker", help="run training workers only (no API)")
    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema (PostgreSQL: FTSERVE_DATABASE_URL)",
    )
    for name, command in (
        ("serve", serve),
        ("inference", inference),
        ("worker", worker),
        ("migrate", migrate),
    ):
        add_setting_flags(command, name)
    for commands in (files_cmd, jobs_cmd, models_cmd, chat_cmd):
        commands.register(sub)
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    settings = settings_with_flags(settings_from_env(), args)
    validate_paths(settings)
    if settings.inference_url:
        from ..inference.remote import BadAddress, parse_address

        try:
            parse_address(settings.inference_url)
        except BadAddress as exc:
            raise ConfigError(f"FTSERVE_INFERENCE_URL={exc}") from None
    return settings


def serve(settings: Settings) -> None:
    import contextlib
    import socket

    import uvicorn

    from ..api.app import create_app
    from ..api.services import build_services

    keys_from_env = bool(settings.api_keys)
    settings, new_key = ensure_api_keys(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = build_services(settings)
    app = create_app(settings, services)

    class Server(uvicorn.Server):
        # The banner waits for the socket: printed earlier, it would name an address that may
        # never answer (port taken) or the wrong port (--port 0).
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                port = int(self.servers[0].sockets[0].getsockname()[1])
                print(startup_banner(settings, port, new_key, keys_from_env), flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn waits for every open response to end; a live event stream of a paused
            # or queued job never would. Its client reconnects with Last-Event-ID.
            services.events.hub.end_streams()
            await super().shutdown(sockets)

    server = Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.log_level == "debug",
            timeout_keep_alive=settings.keep_alive_seconds,
            loop="auto",
            http="auto",
        )
    )
    # uvicorn re-raises a caught Ctrl-C once it has shut down; that is the way out, not an error.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


def startup_banner(settings: Settings, port: int, new_key: str | None, keys_from_env: bool) -> str:
    """How to reach the server just started: API, dashboard, where the key is (and a key
    generated just now, once, ready to paste)."""
    wildcard = settings.host in ("0.0.0.0", "::", "")
    host = "127.0.0.1" if wildcard else settings.host
    root = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    key_file = settings.data_dir / API_KEY_FILE
    lines = []
    if new_key:
        lines += [
            f"ftserve: generated an API key (stored in {key_file}):",
            "",
            f"    export OPENAI_API_KEY={new_key}",
            f"    export OPENAI_BASE_URL={root}/v1",
            "",
        ]
    everywhere = f", all interfaces ({settings.host or '*'})" if wildcard else ""
    key_at = "FTSERVE_API_KEYS (environment)" if keys_from_env else str(key_file)
    lines += [
        f"ftserve: listening on {root}{everywhere}, data in {settings.data_dir.resolve()}",
        f"    API base URL:  {root}/v1  (Azure OpenAI v1 form: {root}/openai/v1)",
        f"    dashboard:     {root}/",
        f"    API key:       {key_at}",
    ]
    return "\n".join(lines)


def run_worker(settings: Settings) -> None:
    import signal

    from ..store.open import open_store
    from ..store.wakes import Wakes
    from ..worker.runner import Worker, new_worker_id

    if not settings.sqlite_path.exists() and not settings.database_url:
        print(
            f"ftserve worker: no database at {settings.sqlite_path}; start `ftserve serve` "
            "with the same --data-dir first.",
            file=sys.stderr,
        )
        sys.exit(2)
    # A worker process is woken by claimable jobs and its own jobs only (store/pg_changes.py).
    worker_id = new_worker_id()
    worker = Worker(settings, open_store(settings, wakes=Wakes.worker(worker_id)), worker_id)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    print(
        f"ftserve worker {worker.worker_id}: {worker.slots} slot(s), data in "
        f"{settings.data_dir.resolve()}",
        flush=True,
    )
    worker.run()


def run_inference(settings: Settings, listen: str) -> None:
    from ..inference.remote import BadAddress, parse_address, serve

    try:
        parse_address(listen)
    except BadAddress as exc:
        print(f"ftserve inference: --listen {exc}", file=sys.stderr)
        sys.exit(2)
    if not settings.api_keys and not (settings.data_dir / "api_key").exists():
        print(
            "ftserve inference: no API keys. Set FTSERVE_API_KEYS as for `ftserve serve`, or use "
            "its --data-dir: the channel's key is derived from them.",
            file=sys.stderr,
        )
        sys.exit(2)
    settings, _ = ensure_api_keys(settings)
    serve(settings, listen)


def run_migrate(settings: Settings) -> None:
    """PostgreSQL is migrated only by this command (many processes on many hosts share it);
    SQLite brings itself up to date when opened, which this does too."""
    from ..errors import StoreError

    try:
        if settings.database_url:
            from ..store.postgres import migrate

            before, now = migrate(settings.database_url)
            if before == now:
                print(f"ftserve migrate: the database is at schema version {now}", flush=True)
            else:
                was = "no schema" if before is None else f"schema version {before}"
                print(f"ftserve migrate: {was} -> schema version {now}", flush=True)
        else:
            from ..store.sqlite import MIGRATIONS, SqliteStore

            SqliteStore(settings.sqlite_path).close()
            print(
                f"ftserve migrate: {settings.sqlite_path} is at schema version "
                f"{MIGRATIONS.version}",
                flush=True,
            )
    except StoreError as exc:
        print(f"ftserve migrate: {exc}", file=sys.stderr)
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if getattr(args, "handler", None) is not None:  # a user command: a client of the API
        sys.exit(run_user_command(args.handler, args))
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"ftserve: invalid setting: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.command == "serve":
        serve(settings)
    elif args.command == "worker":
        run_worker(settings)
    elif args.command == "inference":
        run_inference(settings, args.listen)
    elif args.command == "migrate":
        run_migrate(settings)


if __name__ == "__main__":
    main()
