"""The blob store as a directory: the default (``data_dir/blobs``), and what a shared filesystem
mounted at the same path on every machine uses (``FTSERVE_BLOB_URL=file:///mnt/…``).

A key is the path below the root. Writes go to a temporary file under ``tmp/`` on the same
filesystem and are renamed into place (``os.replace``), so a reader sees a whole file or none,
and a crash leaves at most a file under ``tmp/``, which :meth:`reclaim` deletes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .protocol import TMP_PREFIX, BlobError, BlobInfo, BlobNotFound, check_key, tree_prefix

_COPY_CHUNK = 1 << 20


class LocalBlobs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / TMP_PREFIX.rstrip("/")
        self._tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobs({os.fspath(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key).rstrip("/")

    # -- names -------------------------------------------------------------------------------
    def location(self, key: str) -> str:
        return os.fspath(self._path(key))

    def key_of(self, location: str) -> str | None:
        root = os.path.abspath(self.root)
        path = os.path.abspath(location)
        if path == root or not path.startswith(root + os.sep):
            return None
        return os.path.relpath(path, root).replace(os.sep, "/")

    @property
    def local_root(self) -> Path | None:
        return self.root

    # -- writes ------------------------------------------------------------------------------
    def _staging(self, suffix: str = ".part") -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def put_file(self, key: str, src: Path, *, move: bool = False) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(src, target)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # another filesystem: copy instead
                    raise
        staged = self._staging()
        try:
            with src.open("rb") as fin, staged.open("wb") as fout:
                shutil.copyfileobj(fin, fout, _COPY_CHUNK)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
        if move:
            src.unlink(missing_ok=True)

    def put_tree(self, key: str, src: Path) -> None:
        target = self._path(key)
        if _same(src, target):
            return  # written in place (training writes straight into its claim directory)
        staged = Path(tempfile.mkdtemp(dir=self._tmp, prefix="tree-"))
        try:
            shutil.copytree(src, staged, dirs_exist_ok=True, symlinks=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            old: Path | None = None
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=self._tmp, prefix="old-"))
                os.rename(target, old / "tree")
            os.rename(staged, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)

    # -- reads -------------------------------------------------------------------------------
    def get_file(self, key: str, dest: Path) -> None:
        src = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
        staged = Path(name)
        try:
            with self._reader(src, key) as fin, os.fdopen(fd, "wb") as fout:
                shutil.copyfileobj(fin, fout, _COPY_CHUNK)
            os.replace(staged, dest)
        finally:
            staged.unlink(missing_ok=True)

    def get_tree(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_dir() or not any(p.is_file() for p in src.rglob("*")):
            raise BlobNotFound(tree_prefix(key))
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=False)

    def open(self, key: str) -> IO[bytes]:
        return self._reader(self._path(key), key)

    @staticmethod
    def _reader(path: Path, key: str) -> IO[bytes]:
        try:
            if path.is_dir():
                raise BlobNotFound(key)
            return path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except NotADirectoryError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    # -- deletes -----------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            return  # a directory is a tree, not an object: delete_prefix removes it
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    def delete_prefix(self, prefix: str) -> int:
        if prefix.endswith("/"):
            directory = self._path(prefix)
            if not directory.is_dir() or directory.is_symlink():
                return 0
            count = sum(1 for p in directory.rglob("*") if not p.is_dir())
            shutil.rmtree(directory, ignore_errors=True)
            return count
        count = 0
        for info in list(self.list(prefix)):
            self.delete(info.key)
            count += 1
        return count

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        head, _, _ = prefix.rpartition("/")
        base = self._path(head) if head else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            if not head and TMP_PREFIX.rstrip("/") in dirnames and not prefix.startswith("tmp"):
                dirnames.remove(TMP_PREFIX.rstrip("/"))
            for name in filenames:
                path = os.path.join(dirpath, name)
                key = os.path.relpath(path, self.root).replace(os.sep, "/")
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                yield BlobInfo(key, st.st_size, st.st_mtime)

    def reclaim(self, older_than: float) -> int:
        """Delete what writes cut off by a crash left under ``tmp/``."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self._tmp.iterdir():
            try:
                if path.lstat().st_mtime >= cutoff:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BlobError(f"could not remove {path}: {exc}") from exc
        return removed

    @property
    def tmp_dir(self) -> Path:
        """Where a caller stages a file it will :meth:`put_file` with ``move=True``."""
        return self._tmp


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
