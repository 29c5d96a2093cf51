"""Files: stored under the blob dir, described by a row in the store, fine-tune data checked."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidFile, InvalidValue, NotFound
from ..ids import file_id as new_file_id
from ..store.protocol import Store, UnknownCursor
from ..store.records import FileRecord, Page
from .upload import Upload
from .validation import JsonlError, analyse_file

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
LIST_PURPOSES = (*UPLOAD_PURPOSES, "fine-tune-results", "assistants_output", "batch_output")
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000
STALE_UPLOAD_SECONDS = 24 * 3600


def file_object(f: FileRecord) -> dict[str, Any]:
    return {
        "object": "file",
        "id": f.id,
        "purpose": f.purpose,
        "filename": f.filename,
        "bytes": f.bytes,
        "created_at": f.created_at,
        "expires_at": f.expires_at,
        "status": f.status,
        "status_details": f.status_details,
    }


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id", code=None)


class FileService:
    def __init__(self, store: Store, blob_dir: Path) -> None:
        self._store = store
        self._blob_dir = blob_dir
        (blob_dir / "files").mkdir(parents=True, exist_ok=True)
        (blob_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._sweep_stale_uploads()

    def _sweep_stale_uploads(self) -> None:
        """Remove what uploads cut off by a crash left behind. Only old files: another API
        process sharing this data dir may be receiving one right now."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for path in (self._blob_dir / "tmp").iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue

    @property
    def tmp_dir(self) -> Path:
        return self._blob_dir / "tmp"

    def blob_path(self, f: FileRecord) -> Path:
        return self._blob_dir / f.blob

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
                        "example in the chat, prompt/completion or preference format."
                    ) from None
            fid = new_file_id()
            blob = f"files/{fid}"
            os.replace(upload.file_path, self._blob_dir / blob)
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
            (self._blob_dir / blob).unlink(missing_ok=True)
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
        tmp = self._blob_dir / "tmp" / f"{fid}.part"
        tmp.write_bytes(content)
        os.replace(tmp, self._blob_dir / blob)
        return FileRecord(
            fid, organization, len(content), int(time.time()), filename, purpose, blob
        )

    def discard_generated(self, record: FileRecord) -> None:
        (self._blob_dir / record.blob).unlink(missing_ok=True)

    @staticmethod
    def _expiry(fields: dict[str, str], created_at: int) -> int | None:
        anchor = fields.get("expires_after[anchor]")
        seconds = fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        if anchor != "created_at":
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
        (self._blob_dir / record.blob).unlink(missing_ok=True)
        return record
