"""Local copies of blobs, for code that needs a path: training reads its files and resume
checkpoint from here, inference loads models from here, and training writes its output here
before uploading it.

On a directory store (:class:`LocalBlobs`) every step is a no-op: the blob *is* a local file,
so paths point straight into the blob dir and nothing is copied (today's behaviour and speed).
On a remote store a blob is downloaded once, by key, into ``<cache>/files/…`` (files) or
``<cache>/models/<key>`` (trees), under a file lock (two processes wanting the same model
download it once), into a temporary name renamed into place, so a path handed out is always
complete. Keys name immutable content (a file id, a claim's checkpoint step, a claim's final
model), so a cached copy never goes stale; deleting the file or model evicts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .protocol import TMP_PREFIX, Blobs, check_key


class BlobCache:
    def __init__(self, blobs: Blobs, root: Path) -> None:
        self.blobs = blobs
        self.root = root

    def __repr__(self) -> str:
        return f"BlobCache({self.blobs!r}, {os.fspath(self.root)!r})"

    @property
    def remote(self) -> bool:
        """Whether blobs live elsewhere (a copy here is a copy), or are local files."""
        return self.blobs.local_root is None

    def _local(self, key: str) -> Path | None:
        root = self.blobs.local_root
        return None if root is None else root / check_key(key).rstrip("/")

    @property
    def tmp_dir(self) -> Path:
        """Where uploads are received before they are put: the blob dir's own ``tmp/`` on a
        directory store (the put is then a rename), the cache's otherwise."""
        root = self.blobs.local_root
        path = root / TMP_PREFIX if root is not None else self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- where training writes ----------------------------------------------------------------
    @property
    def work_root(self) -> Path:
        """The local directory a training process writes its output under, as keys: the blob
        dir itself on a directory store (put_tree is then a no-op), else ``<cache>/work``."""
        root = self.blobs.local_root
        return root if root is not None else self.root / "work"

    def work_path(self, key: str) -> Path:
        return self.work_root / check_key(key).rstrip("/")

    def key_for(self, work_path: Path) -> str:
        """The key of a path under :attr:`work_root`."""
        return check_key(Path(os.path.relpath(work_path, self.work_root)).as_posix())

    def forget_work(self, key: str) -> None:
        """Remove the local copy of uploaded training output (remote stores only: on a
        directory store it is the blob)."""
        if self.remote:
            path = self.work_path(key)
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):  # the job's directory, once no claim uses it
                path.parent.rmdir()

    # -- read-through ------------------------------------------------------------------------
    def file(self, key: str) -> Path:
        """A local path holding the blob ``key``."""
        local = self._local(key)
        if local is not None:
            return local
        target = self.root / check_key(key)
        if target.is_file():
            return target
        with self._lock(key):
            if not target.is_file():
                self.blobs.get_file(key, target)
        return target

    def tree(self, key: str) -> Path:
        """A local directory holding the tree ``key/``."""
        local = self._local(key)
        if local is not None:
            return local
        target = self.root / "models" / check_key(key).rstrip("/")
        if target.is_dir():
            return target
        with self._lock(key):
            if not target.is_dir():
                staged = Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="tree-"))
                try:
                    self.blobs.get_tree(key, staged)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(staged, target)
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
        return target

    def adopt(self, key: str, path: Path) -> None:
        """Keep ``path``, a local file just put as ``key``, as its cached copy (consumed)."""
        if not self.remote:
            return
        target = self.root / check_key(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def evict(self, key: str) -> None:
        """Drop the cached copies of ``key`` (a file or a tree), if any."""
        if not self.remote:
            return
        with self._lock(key):
            name = check_key(key).rstrip("/")
            for target in (self.root / name, self.root / "models" / name):
                if target.is_dir() and not target.is_symlink():
                    # Renamed away first: a reader never sees a half-deleted directory.
                    aside = Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="evicted-"))
                    os.rename(target, aside / "tree")
                    shutil.rmtree(aside, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)

    def reclaim(self, older_than: float) -> int:
        """The blob store's :meth:`~Blobs.reclaim`, and the same for the cache's own
        temporaries (received uploads, half-done downloads) of a crashed process."""
        removed = self.blobs.reclaim(older_than)
        if self.remote and (self.root / "tmp").is_dir():
            cutoff = time.time() - older_than
            for path in (self.root / "tmp").iterdir():
                with contextlib.suppress(OSError):
                    if path.lstat().st_mtime < cutoff:
                        if path.is_dir() and not path.is_symlink():
                            shutil.rmtree(path)
                        else:
                            path.unlink()
                        removed += 1
        return removed

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.rstrip("/").encode()).hexdigest()[:32]
        with (locks / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a crash
            yield
