"""What the SQL store needs from a database, and nothing more: the few things that truly differ
between SQLite and PostgreSQL. The store's logic (sql_store.py) is written once over this.

A dialect gives transactions (:meth:`Dialect.tx`, one write transaction; :meth:`Dialect.read`,
one read) as :class:`Session` objects that run the named statements of sql.py, each turned
into the database's own text once (placeholders, the markers sql.py describes). The hooks:

* :meth:`Dialect.wake_for` — PostgreSQL notifies the workers a change concerns at commit;
  SQLite's change feed sees every commit by itself.
* :meth:`Dialect.names_in` — "one of these names" (SQLite ``IN (…)``, PostgreSQL ``= ANY``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .changes import ChangeFeed
from .sql import to_pyformat

T = TypeVar("T")
Row = tuple[Any, ...]
Args = Mapping[str, Any]


class Conn(Protocol):
    """A DB-API connection: sqlite3's and psycopg's both are one."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


class Session:
    """One transaction's statements, run on its connection in the dialect's text."""

    __slots__ = ("_conn", "_text")

    def __init__(self, conn: Conn, text: Callable[[str], str]) -> None:
        self._conn = conn
        self._text = text

    def one(self, statement: str, args: Args | None = None) -> Row | None:
        row: Row | None = self._conn.execute(self._text(statement), args or {}).fetchone()
        return row

    def all(self, statement: str, args: Args | None = None) -> list[Row]:
        rows: list[Row] = self._conn.execute(self._text(statement), args or {}).fetchall()
        return rows

    def run(self, statement: str, args: Args | None = None) -> int:
        """Run a write; the number of rows it wrote."""
        count: int = self._conn.execute(self._text(statement), args or {}).rowcount
        return count


class Dialect(ABC):
    changes: ChangeFeed
    """The wake-up seam of the store over this database (changes.py)."""

    def __init__(self, markers: Mapping[str, str], pyformat: bool) -> None:
        self._markers = markers
        self._pyformat = pyformat
        self._texts: dict[str, str] = {}

    def text(self, statement: str) -> str:
        """A statement of sql.py in this database's SQL (made once, then looked up)."""
        text = self._texts.get(statement)
        if text is None:
            text = statement
            for marker, fill in self._markers.items():
                text = text.replace(marker, fill)
            if self._pyformat:
                text = to_pyformat(text)
            self._texts[statement] = text
        return text

    @abstractmethod
    def tx(self) -> AbstractContextManager[Session]:
        """One write transaction: committed when the block ends, rolled back when it raises
        (then with nothing notified). Driver errors leave as StoreError."""

    @abstractmethod
    def read(self, fn: Callable[[Session], T]) -> T:
        """``fn`` on a read session (its statements see committed data)."""

    @abstractmethod
    def wake_for(self, before: str | None, after: str, owner: str | None, released: bool) -> None:
        """Tell, at the commit of the transaction in progress, the workers a job's change
        concerns (the job went from status ``before`` to ``after``; ``owner`` held it;
        ``released``: its claim was let go)."""

    @abstractmethod
    def names_in(self, column: str, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """A condition "``column`` is one of ``names``", and its parameters."""

    @abstractmethod
    def close(self) -> None: ...
