"""Where ftserve keeps bytes: uploaded and generated files, checkpoints, models (docs/blobs.md).

``open_blobs(settings)`` is the one place that picks the store from ``FTSERVE_BLOB_URL``;
``open_cache(settings)`` adds the local read-through cache that training and inference use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .cache import BlobCache
from .local import LocalBlobs
from .protocol import (
    TMP_PREFIX,
    BlobError,
    BlobInfo,
    BlobNotFound,
    Blobs,
    BlobUnavailable,
    tree_prefix,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "TMP_PREFIX",
    "BlobCache",
    "BlobError",
    "BlobInfo",
    "BlobNotFound",
    "BlobUnavailable",
    "Blobs",
    "LocalBlobs",
    "open_blobs",
    "open_blobs_url",
    "open_cache",
    "parse_blob_url",
    "tree_prefix",
]


def parse_blob_url(url: str) -> tuple[Literal["file", "s3"], str]:
    """``s3://bucket[/prefix]`` → ("s3", url); ``file:///abs/dir`` or ``/abs/dir`` → ("file",
    the directory). ValueError for anything else."""
    if url.startswith("s3://"):
        from .s3 import parse_s3_url

        parse_s3_url(url)
        return "s3", url
    path = url[len("file://") :] if url.startswith("file://") else url
    if not path.startswith("/"):
        raise ValueError(
            f"{url!r}: expected s3://bucket/prefix, file:///absolute/dir or an absolute directory"
        )
    return "file", path


def open_blobs_url(url: str | None, default_dir: Path, *, endpoint_url: str | None = None) -> Blobs:
    if url is None:
        return LocalBlobs(default_dir)
    kind, where = parse_blob_url(url)
    if kind == "file":
        return LocalBlobs(Path(where))
    try:
        from .s3 import S3Blobs
    except ImportError as exc:  # pragma: no cover - the s3 extra is missing
        raise BlobError(
            f"FTSERVE_BLOB_URL={url} needs boto3: pip install 'ftserve[s3]' ({exc})"
        ) from exc
    return S3Blobs(where, endpoint_url=endpoint_url)


def open_blobs(settings: Settings) -> Blobs:
    """The blob store the settings name: the directory ``data_dir/blobs`` by default."""
    return open_blobs_url(
        settings.blob_url, settings.blob_dir, endpoint_url=settings.s3_endpoint_url
    )


def open_cache(settings: Settings) -> BlobCache:
    return BlobCache(open_blobs(settings), settings.cache_path)
