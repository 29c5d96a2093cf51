"""Pick the Store implementation from settings."""

from __future__ import annotations

from ..config import Settings
from ..errors import StoreError
from .protocol import Store
from .sqlite import SqliteStore
from .wakes import Wakes


def open_store(
    settings: Settings, *, per_step_writes: bool = False, wakes: Wakes | None = None
) -> Store:
    """``per_step_writes``: the store of a training process, which commits once per step.
    ``wakes``: whose commits wake this process's waiters on PostgreSQL (default: everyone's;
    SQLite's change feed sees every commit whatever this says)."""
    if settings.database_url:
        # Imported here: psycopg is the optional ``postgres`` extra, unused by SQLite setups.
        from .postgres import PostgresStore

        try:
            return PostgresStore(settings.database_url, wakes=wakes)
        except StoreError as exc:
            # A schema to migrate, or a database that cannot be reached: said in one line.
            raise SystemExit(f"ftserve: {exc}") from None
    return SqliteStore(settings.sqlite_path, background_checkpoints=per_step_writes)
