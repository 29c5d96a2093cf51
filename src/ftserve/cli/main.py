"""The ``ftserve`` command: ``serve`` runs the API (and, from the training issue on, workers)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import ConfigError, Settings, ensure_api_keys, settings_from_env, validate_paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftserve",
        description="Self-hosted fine-tuning service speaking the OpenAI fine-tuning API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server on the embedded store")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, FTSERVE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, FTSERVE_PORT)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ./ftserve-data)")
    serve.add_argument("--log-level", help="error, warning, info or debug")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    settings = settings_from_env().with_overrides(
        host=args.host, port=args.port, data_dir=args.data_dir, log_level=args.log_level
    )
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"--port {settings.port}: must be between 0 and 65535")
    validate_paths(settings)
    return settings


def serve(settings: Settings) -> None:
    import uvicorn

    from ..api.app import create_app

    settings, new_key = ensure_api_keys(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://{settings.host}:{settings.port}/v1"
    if new_key:
        print(
            f"ftserve: generated an API key (stored in {settings.data_dir / 'api_key'}):\n\n"
            f"    export OPENAI_API_KEY={new_key}\n    export OPENAI_BASE_URL={base}\n",
            flush=True,
        )
    print(
        f"ftserve: serving {base} (Azure v1 form: {base[:-3]}/openai/v1), data in "
        f"{settings.data_dir.resolve()}",
        flush=True,
    )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        loop="auto",
        http="auto",
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    main()
