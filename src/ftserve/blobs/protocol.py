"""The blob-store seam: every byte ftserve keeps outside its database goes through it.

Keys are relative, ``/``-separated paths, the same on every store: ``files/file-…`` (uploaded
and generated files), ``jobs/<job>/claim-<token>/checkpoints/step-…/…`` and
``jobs/<job>/claim-<token>/final/…`` (a claim's training output). A *tree* is every key under
``<key>/``: a checkpoint or model directory. ``tmp/`` is the staging prefix, swept by
:meth:`Blobs.reclaim`.

Stores give no rename and no transactions, so nothing here decides what exists for a client: a
blob is a file, checkpoint or model only once a store row names it (docs/blobs.md). Every put is
atomic per object (a reader sees the old bytes or the new, never a part), puts and gets stream
(memory stays flat whatever the size), and an upload cut off by a crash is never visible; the
space it took is given back by ``reclaim`` at the next start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..errors import ApiError

TMP_PREFIX = "tmp/"
_BAD_PART = re.compile(r"^(|\.|\.\.)$")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch, when the object was last written


class BlobError(Exception):
    """The store failed for a reason retrying will not fix (no such bucket, access denied)."""


class BlobNotFound(BlobError, FileNotFoundError):
    """No object has this key (a FileNotFoundError too: code that reads local files handles
    it as it handles a missing file)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob {key!r}")
        self.key = key


class BlobUnavailable(ApiError):
    """The store cannot be reached now (refused, timed out, throttled, a 5xx): worth retrying.
    In the API it is a 503 that says to retry (the SDKs do by themselves); ``detail`` is for
    the log and for a job's failure message."""

    status = 503
    code = "blob_store_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The server's blob store is unavailable right now. Please retry your request in a "
            "few seconds."
        )
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


def check_key(key: str) -> str:
    """``key`` if it is a relative path that stays inside the store, else ValueError."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"bad blob key {key!r}")
    parts = key.rstrip("/").split("/")
    if any(_BAD_PART.match(p) for p in parts):
        raise ValueError(f"bad blob key {key!r}")
    return key


def tree_prefix(key: str) -> str:
    """The prefix listing a tree: ``key/`` (``…/step-1`` must not list ``…/step-10``)."""
    return check_key(key).rstrip("/") + "/"


class Blobs(Protocol):
    """A blob store. Methods raise :class:`BlobNotFound` for a missing key,
    :class:`BlobUnavailable` when the store cannot be reached, :class:`BlobError` otherwise."""

    @property
    def local_root(self) -> Path | None:
        """The local directory whose files *are* the blobs (a directory store), or None (a
        remote store: read through the cache, blobs/cache.py)."""
        ...

    def location(self, key: str) -> str:
        """Where ``key`` lies, for people and for :meth:`key_of` (a path, or s3://…)."""
        ...

    def key_of(self, location: str) -> str | None:
        """The key at ``location`` (as :meth:`location` wrote it), None if it is not here."""
        ...

    def put_file(self, key: str, src: Path, *, move: bool = False) -> None:
        """Store the bytes of local file ``src`` under ``key``, replacing what was there.
        ``move``: ``src`` may be consumed (renamed into place when that is possible)."""
        ...

    def put_tree(self, key: str, src: Path) -> None:
        """Store every file under local directory ``src`` as ``key/<relative path>``; keys
        under ``key/`` that ``src`` lacks are deleted. A no-op when ``src`` is the tree's
        own local directory (under :attr:`local_root`)."""
        ...

    def get_file(self, key: str, dest: Path) -> None:
        """Write the blob to local file ``dest`` (complete or not at all)."""
        ...

    def get_tree(self, key: str, dest: Path) -> None:
        """Write the tree under ``key/`` into local directory ``dest`` (created; the caller
        renames it into place). BlobNotFound if the tree is empty."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """A streaming reader of the blob; close it."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is no error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; how many were deleted."""
        ...

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        """Every object whose key starts with ``prefix``, in no particular order."""
        ...

    def reclaim(self, older_than: float) -> int:
        """Give back the space of uploads cut off by a crash that started more than
        ``older_than`` seconds ago (staged objects, incomplete multipart uploads); how many
        were removed. Younger ones may belong to an upload under way in another process."""
        ...
