"""Pick the Store implementation from settings."""

from __future__ import annotations

from ..config import Settings
from .protocol import Store
from .sqlite import SqliteStore


def open_store(settings: Settings, *, per_step_writes: bool = False) -> Store:
    """``per_step_writes``: the store of a training process, which commits once per step."""
    if settings.database_url:
        # Imported here: psycopg is the optional ``postgres`` extra, unused by SQLite setups.
        from .postgres import PostgresStore, SchemaNotReady

        try:
            return PostgresStore(settings.database_url)
        except SchemaNotReady as exc:
            raise SystemExit(f"ftserve: {exc}") from None
    return SqliteStore(settings.sqlite_path, background_checkpoints=per_step_writes)
