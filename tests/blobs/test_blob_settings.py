"""Which blob store the settings select (FTSERVE_BLOB_URL and friends), and what they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftserve.blobs import LocalBlobs, open_blobs, open_cache
from ftserve.config import ConfigError, settings_from_env, validate_paths


def test_the_default_is_the_data_dirs_blob_directory(tmp_path: Path) -> None:
    settings = settings_from_env({"FTSERVE_DATA_DIR": str(tmp_path / "data")})
    blobs = open_blobs(settings)
    assert isinstance(blobs, LocalBlobs) and blobs.root == tmp_path / "data" / "blobs"
    cache = open_cache(settings)
    assert cache.root == tmp_path / "data" / "cache" and not cache.remote
    # The directory store's cache is no cache: paths are the blobs themselves.
    assert cache.file("files/file-x") == tmp_path / "data" / "blobs" / "files" / "file-x"
    assert cache.work_path("jobs/j/claim-t") == tmp_path / "data" / "blobs" / "jobs/j/claim-t"


def test_a_shared_filesystem_by_file_url(tmp_path: Path) -> None:
    shared = tmp_path / "mnt" / "blobs"
    for url in (f"file://{shared}", str(shared)):
        settings = settings_from_env({"FTSERVE_DATA_DIR": str(tmp_path), "FTSERVE_BLOB_URL": url})
        validate_paths(settings)
        blobs = open_blobs(settings)
        assert isinstance(blobs, LocalBlobs) and blobs.root == shared


def test_s3_by_url_with_its_endpoint_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("boto3", reason="the s3 extra is not installed")
    from ftserve.blobs.s3 import S3Blobs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    env = {
        "FTSERVE_DATA_DIR": str(tmp_path / "data"),
        "FTSERVE_BLOB_URL": "s3://my-bucket/teams/ml/",
        "FTSERVE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "FTSERVE_CACHE_DIR": str(tmp_path / "fast-disk"),
        "FTSERVE_BLOB_RETRY_SECONDS": "30",
        "FTSERVE_UPLOAD_GRACE_SECONDS": "600",
    }
    settings = settings_from_env(env)
    validate_paths(settings)
    assert (settings.blob_retry_seconds, settings.upload_grace_seconds) == (30.0, 600.0)
    cache = open_cache(settings)
    blobs = cache.blobs
    assert isinstance(blobs, S3Blobs) and cache.remote
    assert (blobs.bucket, blobs.prefix) == ("my-bucket", "teams/ml/")
    assert blobs.location("files/f") == "s3://my-bucket/teams/ml/files/f"
    assert cache.root == tmp_path / "fast-disk"
    assert cache.work_path("jobs/j/claim-t") == tmp_path / "fast-disk" / "work" / "jobs/j/claim-t"


@pytest.mark.parametrize("url", ["gs://bucket/x", "s3://", "s3:///prefix", "relative/dir"])
def test_a_bad_blob_url_is_refused_naming_the_setting(tmp_path: Path, url: str) -> None:
    settings = settings_from_env({"FTSERVE_DATA_DIR": str(tmp_path), "FTSERVE_BLOB_URL": url})
    with pytest.raises(ConfigError, match="FTSERVE_BLOB_URL"):
        validate_paths(settings)
