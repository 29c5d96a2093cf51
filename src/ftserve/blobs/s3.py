"""The blob store on S3-compatible object storage, through boto3 (``pip install 'ftserve[s3]'``).

``FTSERVE_BLOB_URL=s3://bucket/prefix`` selects it; the endpoint is ``FTSERVE_S3_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL``, which boto3 reads itself) for MinIO, Ceph, R2, moto…; region and
credentials come from boto3's usual chain (``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ~/.aws/config, instance
roles). docs/blobs.md has the rest.

Large objects go up as multipart uploads through boto3's managed transfer, in parts of
``PART_BYTES`` with at most ``CONCURRENCY`` in flight, and come down as one streamed GET copied
in 1 MiB chunks, so memory stays near ``PART_BYTES * CONCURRENCY`` whatever the object's size.
An object appears only when its upload completes (S3 puts are atomic per object); a multipart
upload cut off by a crash stays invisible and is aborted by :meth:`S3Blobs.reclaim`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from .protocol import (
    TMP_PREFIX,
    BlobError,
    BlobInfo,
    BlobNotFound,
    BlobUnavailable,
    check_key,
    tree_prefix,
)

log = logging.getLogger("ftserve.blobs")

PART_BYTES = 8 << 20
CONCURRENCY = 4
_MULTIPART_THRESHOLD = 16 << 20
_COPY_CHUNK = 1 << 20
_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
_TRANSIENT = {
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalError",
    "RequestLimitExceeded",
}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (``bucket``, ``some/prefix/``); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket (s3://bucket/prefix)")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _translate(exc: BaseException, what: str) -> BaseException:
    """boto3's error as this seam's: missing, unreachable (retry), or failed."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as EndpointUnreachable

    cause: BaseException = exc
    # upload_file wraps the client error in S3UploadFailedError (its text only): look below.
    if type(exc).__name__ == "S3UploadFailedError" and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING or status == 404:
            # "get s3://bucket/key" -> "s3://bucket/key": what is missing.
            return BlobNotFound(what.rpartition(" ")[2])
        if code in _TRANSIENT or status >= 500 or status == 429:
            return BlobUnavailable(f"{what}: {cause}")
        return BlobError(f"{what}: {cause}")
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return BlobError(f"{what}: {cause} (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
    # Refused, reset, timed out, cut off midway: the store may well answer again soon.
    if isinstance(cause, HTTPClientError | EndpointUnreachable | IncompleteReadError):
        return BlobUnavailable(f"{what}: {cause}")
    if isinstance(cause, BotoCoreError):
        return BlobError(f"{what}: {cause}")
    if isinstance(cause, ConnectionError | TimeoutError):
        return BlobUnavailable(f"{what}: {cause}")
    return exc


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except (BlobError, BlobUnavailable):
        raise
    except Exception as exc:
        translated = _translate(exc, what)
        if translated is exc:
            raise
        raise translated from exc


def endpoint_from_env(explicit: str | None) -> str | None:
    """The endpoint boto3 will talk to when one is set (ours, else AWS_ENDPOINT_URL[_S3])."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


class S3Blobs:
    def __init__(self, url: str, *, endpoint_url: str | None = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        endpoint = endpoint_from_env(endpoint_url)
        config = Config(
            # A few quick retries here; a save outlasting an outage retries above (retry.py).
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            # Self-hosted endpoints (MinIO, moto, Ceph) rarely have per-bucket DNS names.
            s3={"addressing_style": "path" if endpoint else "auto"},
        )
        session = boto3.session.Session()
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=_MULTIPART_THRESHOLD,
            multipart_chunksize=PART_BYTES,
            max_concurrency=CONCURRENCY,
            use_threads=True,
            preferred_transfer_client="classic",
        )

    def __repr__(self) -> str:
        return f"S3Blobs({self.url!r})"

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- names -------------------------------------------------------------------------------
    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key).rstrip('/')}"

    def key_of(self, location: str) -> str | None:
        head = f"s3://{self.bucket}/{self.prefix}"
        if not location.startswith(head) or len(location) == len(head):
            return None
        try:
            return check_key(location[len(head) :])
        except ValueError:
            return None

    @property
    def local_root(self) -> Path | None:
        return None

    # -- writes ------------------------------------------------------------------------------
    def put_file(self, key: str, src: Path, *, move: bool = False) -> None:
        with _errors(f"put {self.location(key)}"):
            self._client.upload_file(
                os.fspath(src), self.bucket, self._full(key), Config=self._transfer
            )
        if move:
            src.unlink(missing_ok=True)

    def put_tree(self, key: str, src: Path) -> None:
        prefix = tree_prefix(key)
        wrote: set[str] = set()
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            self.put_file(prefix + rel, path)
            wrote.add(prefix + rel)
        # A tree written again over an older one must not keep the older one's extra files.
        for info in list(self.list(prefix)):
            if info.key not in wrote:
                self.delete(info.key)

    # -- reads -------------------------------------------------------------------------------
    def get_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
        staged = Path(name)
        what = f"get {self.location(key)}"
        try:
            # One streamed GET, copied in 1 MiB chunks: flat memory. (Parallel ranged GETs
            # were 5x slower against moto's server here, which reads the whole object for each
            # range, and gain little for the sizes of checkpoints.)
            with self.open(key) as body, open(fd, "wb") as out, _errors(what):
                shutil.copyfileobj(body, out, _COPY_CHUNK)
            os.replace(staged, dest)
        finally:
            staged.unlink(missing_ok=True)

    def get_tree(self, key: str, dest: Path) -> None:
        prefix = tree_prefix(key)
        found = False
        for info in self.list(prefix):
            found = True
            self.get_file(info.key, dest / info.key[len(prefix) :])
        if not found:
            raise BlobNotFound(prefix)

    def open(self, key: str) -> IO[bytes]:
        with _errors(f"get {self.location(key)}"):
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        return cast(IO[bytes], response["Body"])

    def exists(self, key: str) -> bool:
        try:
            with _errors(f"head {self.location(key)}"):
                self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except BlobNotFound:
            return False
        return True

    # -- deletes -----------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        with _errors(f"delete {self.location(key)}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.prefix + info.key for info in self.list(prefix)]
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = keys[i : i + _DELETE_BATCH]
            with _errors(f"delete s3://{self.bucket}/{self.prefix}{prefix}*"):
                answer = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise BlobError(
                    f"delete s3://{self.bucket}/{first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message')} ({len(answer['Errors'])} keys not deleted)"
                )
        return len(keys)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        if prefix:
            check_key(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with _errors(f"list s3://{self.bucket}/{self.prefix}{prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield BlobInfo(
                        obj["Key"][len(self.prefix) :],
                        int(obj["Size"]),
                        obj["LastModified"].timestamp(),
                    )

    def reclaim(self, older_than: float) -> int:
        """Abort the multipart uploads under the prefix that began more than ``older_than``
        seconds ago (their parts are billed space nobody sees), and delete old objects under
        the staging prefix."""
        cutoff = time.time() - older_than
        removed = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _errors(f"list uploads of s3://{self.bucket}/{self.prefix}"):
            stale = [
                (upload["Key"], upload["UploadId"])
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix)
                for upload in page.get("Uploads", [])
                if upload["Initiated"].timestamp() < cutoff
            ]
        for full_key, upload_id in stale:
            try:
                with _errors(f"abort the upload of s3://{self.bucket}/{full_key}"):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=full_key, UploadId=upload_id
                    )
            except BlobNotFound:
                continue  # completed or aborted meanwhile
            log.info("aborted an incomplete upload of s3://%s/%s", self.bucket, full_key)
            removed += 1
        for info in list(self.list(TMP_PREFIX)):
            if info.mtime < cutoff:
                self.delete(info.key)
                removed += 1
        return removed
