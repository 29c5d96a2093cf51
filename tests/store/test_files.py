"""Files: add, read while not expired, pages both ways, delete, and the blob keys rows name
(with the start's sweep of orphaned blobs that relies on them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ftserve.files.service import FileService
from ftserve.store.protocol import Store, UnknownCursor
from ftserve.store.records import FileRecord
from ftserve.store.sqlite import SqliteStore

pytestmark = pytest.mark.both_backends


def _file(n: int, org: str = "personal", **fields: object) -> FileRecord:
    base = FileRecord(f"file-{n}", org, n, n, f"f{n}.jsonl", "fine-tune", f"files/file-{n}")
    from dataclasses import replace

    return replace(base, **fields)  # type: ignore[arg-type]


def test_files_read_page_and_delete(store: Store) -> None:
    files = [_file(1), _file(2, purpose="fine-tune-results"), _file(3), _file(4, expires_at=50)]
    for f in files:
        store.add_file(f)
    store.add_file(_file(5, "other"))
    assert store.get_file("personal", "file-1", 0) == files[0]
    assert store.get_file("other", "file-1", 0) is None
    assert store.get_file("personal", "file-4", 49) == files[3]
    assert store.get_file("personal", "file-4", 50) is None  # expired

    def ids(**kw: object) -> tuple[list[str], bool]:
        args: dict[str, object] = {"purpose": None, "after": None, "limit": 10}
        args |= {"ascending": False, "now": 0} | kw
        page = store.list_files("personal", **args)  # type: ignore[arg-type]
        return [f.id for f in page.items], page.has_more

    assert ids() == (["file-4", "file-3", "file-2", "file-1"], False)
    assert ids(now=60) == (["file-3", "file-2", "file-1"], False)
    assert ids(limit=2) == (["file-4", "file-3"], True)
    assert ids(after="file-3") == (["file-2", "file-1"], False)
    assert ids(after="file-2", ascending=True) == (["file-3", "file-4"], False)
    assert ids(purpose="fine-tune", ascending=True, limit=1) == (["file-1"], True)
    with pytest.raises(UnknownCursor):
        ids(after="file-5")  # another organization's
    assert store.delete_file("other", "file-1") is None
    assert store.delete_file("personal", "file-1") == files[0]
    assert store.delete_file("personal", "file-1") is None
    assert store.get_file("personal", "file-1", 0) is None


def test_stale_upload_leftovers_are_swept(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    tmp = tmp_path / "blobs" / "tmp"
    tmp.mkdir(parents=True)
    old, fresh = tmp / "upload-old", tmp / "upload-fresh"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    FileService(store, tmp_path / "blobs")
    assert not old.exists() and fresh.exists()
    store.close()


def test_orphaned_file_blobs_are_swept_at_start(store: Store, tmp_path: Path) -> None:
    """A file blob no row names (an upload cut off between its bytes and its row) is deleted
    when the API starts, once old; named blobs, expired files' included, and young orphans
    stay."""
    files = tmp_path / "blobs" / "files"
    files.mkdir(parents=True)
    names = ["file-kept", "file-expired", "file-orphan", "file-young"]
    for name in names:
        (files / name).write_bytes(name.encode())
    day_ago = time.time() - 2 * 24 * 3600
    for name in names[:3]:
        os.utime(files / name, (day_ago, day_ago))
    store.add_file(
        FileRecord("file-kept", "personal", 9, 1, "a.jsonl", "fine-tune", "files/file-kept")
    )
    store.add_file(
        FileRecord(
            "file-expired", "personal", 12, 1, "b.jsonl", "fine-tune", "files/file-expired", 2
        )
    )
    FileService(store, tmp_path / "blobs", reclaim_after=24 * 3600)
    assert sorted(p.name for p in files.iterdir()) == ["file-expired", "file-kept", "file-young"]
    assert store.file_blobs() == {"files/file-kept", "files/file-expired"}
