"""Pick the Store implementation from settings."""

from __future__ import annotations

from ..config import Settings
from .protocol import Store
from .sqlite import SqliteStore


def open_store(settings: Settings, *, per_step_writes: bool = False) -> Store:
    """``per_step_writes``: the store of a training process, which commits once per step."""
    if settings.database_url:
        raise SystemExit(
            "FTSERVE_DATABASE_URL is set, but this build of ftserve has only the embedded SQLite "
            "store; unset it to use SQLite in the data dir."
        )
    return SqliteStore(settings.sqlite_path, background_checkpoints=per_step_writes)
