"""Streaming ``multipart/form-data`` reception: the file part goes straight to a temp file.

python-multipart does the parsing; this module only routes parts. Starlette's own form parser
would spool the file into memory first (up to 1 MiB) and could not stop at our size limit while
the body is still arriving, so an oversized upload is cut off here as soon as it crosses the
limit, with a 413.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..errors import InvalidRequest, InvalidValue, PayloadTooLarge

_MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    filename: str | None = None
    size: int = 0

    def discard(self) -> None:
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)
            self.file_path = None


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The uploaded file is too large: this server accepts files up to {limit} bytes "
        "(set FTSERVE_MAX_UPLOAD_BYTES to change it).",
        param="file",
    )


class _Receiver:
    def __init__(self, tmp_dir: Path, max_bytes: int) -> None:
        self.upload = Upload()
        self._tmp_dir = tmp_dir
        self._max = max_bytes
        self._header_field = b""
        self._header_value = b""
        self._disposition: bytes = b""
        self._name: str | None = None
        self._sink: IO[bytes] | None = None
        self._field_buf = bytearray()

    # python-multipart callbacks
    def on_part_begin(self) -> None:
        self._disposition = b""
        self._name = None
        self._field_buf.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._disposition)
        name = opts.get(b"name")
        self._name = name.decode("utf-8", "replace") if name is not None else None
        if self._name == "file":
            if self.upload.file_path is not None:
                raise InvalidValue("Only one 'file' part may be uploaded.", param="file")
            raw = opts.get(b"filename")
            self.upload.filename = (
                os.path.basename(raw.decode("utf-8", "replace")) if raw else "upload"
            ) or "upload"
            fd, path = tempfile.mkstemp(dir=self._tmp_dir, prefix="upload-")
            self.upload.file_path = Path(path)
            self._sink = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "file" and self._sink is not None:
            self.upload.size += end - start
            if self.upload.size > self._max:
                raise too_large(self._max)
            self._sink.write(data[start:end])
        elif self._name is not None:
            self._field_buf += data[start:end]
            if len(self._field_buf) > _MAX_FIELD_BYTES:
                raise InvalidValue(f"The form field '{self._name}' is too long.", param=self._name)

    def on_part_end(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        elif self._name is not None:
            self.upload.fields[self._name] = self._field_buf.decode("utf-8", "replace")

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


async def receive_upload(request: Request, tmp_dir: Path, max_bytes: int) -> Upload:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "Uploads must be sent as multipart/form-data with the fields 'file' and 'purpose'.",
            param="file",
        )
    declared = request.headers.get("content-length")
    # The multipart framing adds a little; anything far beyond the limit is refused unread.
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > max_bytes + _MAX_FIELD_BYTES * 4
    ):
        raise too_large(max_bytes)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(tmp_dir, max_bytes)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": receiver.on_part_begin,
            "on_part_data": receiver.on_part_data,
            "on_part_end": receiver.on_part_end,
            "on_header_field": receiver.on_header_field,
            "on_header_value": receiver.on_header_value,
            "on_header_end": receiver.on_header_end,
            "on_headers_finished": receiver.on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        receiver.close()
        receiver.upload.discard()
        raise InvalidRequest(
            f"The multipart body could not be parsed: {exc}", param="file"
        ) from None
    except BaseException:
        receiver.close()
        receiver.upload.discard()
        raise
    receiver.close()
    return receiver.upload
