"""Which PostgreSQL notification channels a process listens on (store/pg_changes.py says why
they are split). Kept apart from the PostgreSQL modules: SQLite setups, which have no psycopg,
name these too (they mean nothing to SQLite's change feed, which sees every commit)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHANNEL = "ftserve_changes"  # every commit
QUEUE_CHANNEL = "ftserve_queue"  # a job may have become claimable


def worker_channel(worker_id: str) -> str:
    """The channel of the commits that concern the jobs one worker holds (an identifier
    whatever the worker's id holds: host names have dots and dashes)."""
    return "ftserve_worker_" + hashlib.sha1(worker_id.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Wakes:
    """The channels whose notifications wake this process's waiters."""

    channels: tuple[str, ...]

    @staticmethod
    def everything() -> Wakes:
        """API processes: live event streams follow every commit."""
        return Wakes((CHANNEL,))

    @staticmethod
    def nothing() -> Wakes:
        """Training processes: they wait on no one (the claim fence stops them)."""
        return Wakes(())

    @staticmethod
    def worker(worker_id: str) -> Wakes:
        """A worker process: claimable jobs, and the jobs it holds."""
        return Wakes((QUEUE_CHANNEL, worker_channel(worker_id)))
