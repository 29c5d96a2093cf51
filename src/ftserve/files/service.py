"""Files: bytes in the blob store, described by a row in the store, fine-tune data checked.

An upload is received into a local temporary file, checked, put into the blob store, and only
then recorded: the row is the commit point (docs/blobs.md), so a crash before it leaves bytes no
client can see, never a row without bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from ..blobs import BlobCache, BlobError, BlobUnavailable, LocalBlobs
from ..errors import InvalidFile, InvalidValue, NotFound, StoreError
from ..ids import file_id as new_file_id
from ..store.protocol import Store, UnknownCursor
from ..store.records import FileRecord, Page
from .schemas import EXPIRY_ANCHORS, MAX_EXPIRY, MIN_EXPIRY, UPLOAD_PURPOSES
from .upload import Upload
from .validation import JsonlError, analyse_file

STALE_UPLOAD_SECONDS = 24 * 3600

log = logging.getLogger("ftserve.files")


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id", code=None)


def as_cache(blobs: BlobCache | Path) -> BlobCache:
    """A directory (the blob dir, as callers passed before the blob-store seam) or a cache."""
    if isinstance(blobs, BlobCache):
        return blobs
    return BlobCache(LocalBlobs(blobs), blobs.parent / "cache")


class FileService:
    def __init__(
        self,
        store: Store,
        blobs: BlobCache | Path,
        *,
        reclaim_after: float | None = STALE_UPLOAD_SECONDS,
    ) -> None:
        """``reclaim_after``: give back the space of uploads cut off by a crash longer ago
        than this, now (None: leave it to the process that starts the service)."""
        self._store = store
        self._blobs = as_cache(blobs)
        if reclaim_after is not None:
            self._reclaim(reclaim_after)

    def _reclaim(self, older_than: float) -> None:
        """Only old leftovers: another API process sharing the store may be receiving one
        right now."""
        try:
            removed = self._blobs.reclaim(older_than) + self._sweep_orphans(older_than)
        except (BlobError, BlobUnavailable, StoreError) as exc:
            log.warning("could not reclaim the space of cut-off uploads: %s", exc)
            return
        if removed:
            log.info("reclaimed %d leftover(s) of cut-off uploads", removed)

    def _sweep_orphans(self, older_than: float) -> int:
        """Delete file blobs no row names: an upload stored whole but cut off before its row
        was committed, a results file whose job's write never committed, or a deleted file's
        bytes the blob store refused to delete then. The blobs are listed before the rows
        are read, and only old ones: a younger blob may be an upload about to commit its row."""
        cutoff = time.time() - older_than
        old = [b.key for b in self._blobs.blobs.list("files/") if b.mtime < cutoff]
        if not old:
            return 0
        named = self._store.file_blobs()
        orphans = [key for key in old if key not in named]
        for key in orphans:
            self._remove(key)
        return len(orphans)

    @property
    def tmp_dir(self) -> Path:
        return self._blobs.tmp_dir

    @property
    def remote(self) -> bool:
        """Whether reading a file may have to fetch it (a remote blob store)."""
        return self._blobs.remote

    def blob_path(self, f: FileRecord) -> Path:
        """A local path holding the file's bytes (downloaded once from a remote store)."""
        return self._blobs.file(f.blob)

    def _put(self, key: str, path: Path, *, cache: bool) -> None:
        """Store local file ``path`` (consumed) as ``key``. ``cache``: on a remote store keep it
        as the cached copy, so the checks and trainings that read it next on this machine don't
        fetch it again."""
        blobs = self._blobs
        if blobs.remote:
            blobs.blobs.put_file(key, path, move=not cache)
            if cache:
                blobs.adopt(key, path)
        else:
            blobs.blobs.put_file(key, path, move=True)

    def _remove(self, key: str) -> None:
        """Delete a blob no row names any more. The row went first: a store that cannot be
        reached now leaves garbage behind (logged), never a listed file without bytes."""
        try:
            self._blobs.blobs.delete(key)
        except (BlobError, BlobUnavailable) as exc:
            log.warning("could not delete blob %s: %s", key, exc)
        self._blobs.evict(key)

    def create_from_upload(self, organization: str, upload: Upload) -> FileRecord:
        """Check the upload, move it into place and record it. Runs in a worker thread: the
        JSONL check reads the whole file."""
        try:
            purpose = upload.fields.get("purpose")
            if purpose is None:
                raise InvalidValue(
                    "Missing required parameter: 'purpose'.",
                    param="purpose",
                    code="missing_required_parameter",
                )
            if purpose not in UPLOAD_PURPOSES:
                raise InvalidValue(
                    f"Invalid value for 'purpose': '{purpose[:64]}'. Supported values are: "
                    + ", ".join(f"'{p}'" for p in UPLOAD_PURPOSES)
                    + ".",
                    param="purpose",
                )
            if upload.file_path is None:
                raise InvalidValue(
                    "Missing required parameter: 'file'.",
                    param="file",
                    code="missing_required_parameter",
                )
            created_at = int(time.time())
            expires_at = self._expiry(upload.fields, created_at)
            if purpose == "fine-tune":
                try:
                    analyse_file(upload.file_path)
                except JsonlError as exc:
                    raise InvalidFile(
                        f"Invalid file format for fine-tuning: {exc}. Each line must be one JSON "
                        "example in the chat, prompt/completion, preference or reinforcement "
                        "format."
                    ) from None
            fid = new_file_id()
            blob = f"files/{fid}"
            self._put(blob, upload.file_path, cache=True)
            upload.file_path = None
        finally:
            upload.discard()
        record = FileRecord(
            id=fid,
            organization=organization,
            bytes=upload.size,
            created_at=created_at,
            filename=upload.filename or "upload",
            purpose=purpose,
            blob=blob,
            expires_at=expires_at,
        )
        try:
            self._store.add_file(record)
        except BaseException:
            self._remove(blob)
            raise
        return record

    def write_generated(
        self, organization: str, filename: str, purpose: str, content: bytes
    ) -> FileRecord:
        """The blob of a file the service writes itself (a job's results CSV). It exists for
        clients once the caller commits the returned record (with the write it belongs to);
        until then it is an orphan that ``discard_generated`` or the upload sweep removes."""
        fid = new_file_id()
        blob = f"files/{fid}"
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=f"{fid}-", suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            self._put(blob, tmp, cache=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return FileRecord(
            fid, organization, len(content), int(time.time()), filename, purpose, blob
        )

    def discard_generated(self, record: FileRecord) -> None:
        self._remove(record.blob)

    @staticmethod
    def _expiry(fields: dict[str, str], created_at: int) -> int | None:
        anchor = fields.get("expires_after[anchor]")
        seconds = fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        if anchor not in EXPIRY_ANCHORS:
            raise InvalidValue(
                "Invalid 'expires_after[anchor]': the only supported anchor is 'created_at'.",
                param="expires_after.anchor",
            )
        seconds = None if seconds is None else seconds.strip()
        if not seconds or not (seconds.isascii() and seconds.isdigit()):
            raise InvalidValue(
                "Invalid 'expires_after[seconds]': expected an integer number of seconds.",
                param="expires_after.seconds",
                code="invalid_type",
            )
        value = int(seconds)
        if not MIN_EXPIRY <= value <= MAX_EXPIRY:
            raise InvalidValue(
                f"Invalid 'expires_after[seconds]': expected a value between {MIN_EXPIRY} and "
                f"{MAX_EXPIRY}, but got {value} instead.",
                param="expires_after.seconds",
            )
        return created_at + value

    def get(self, organization: str, file_id: str) -> FileRecord:
        record = self._store.get_file(organization, file_id, int(time.time()))
        if record is None:
            raise file_not_found(file_id)
        return record

    def list(
        self,
        organization: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
    ) -> Page[FileRecord]:
        try:
            return self._store.list_files(
                organization,
                purpose=purpose,
                after=after,
                limit=limit,
                ascending=ascending,
                now=int(time.time()),
            )
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': no file {after!r} to page from.", param="after"
            ) from None

    def delete(self, organization: str, file_id: str) -> FileRecord:
        self.get(organization, file_id)  # an expired file is gone for every endpoint alike
        record = self._store.delete_file(organization, file_id)
        if record is None:
            raise file_not_found(file_id)
        self._remove(record.blob)
        return record
