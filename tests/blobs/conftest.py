"""The blob stores under test: the directory store always, S3 against moto's server on loopback
(a bucket per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ftserve.blobs import Blobs, LocalBlobs
from tests.blobs.moto_server import AWS_ENV, MotoServer


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory, aws_env: None) -> Iterator[MotoServer]:
    pytest.importorskip("boto3", reason="the s3 extra is not installed")
    pytest.importorskip("moto", reason="moto[server] (test extra) is not installed")
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def blobs(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Blobs:
    if kind == "local":
        return LocalBlobs(tmp_path / "blobs")
    from ftserve.blobs.s3 import S3Blobs

    server: MotoServer = request.getfixturevalue("moto")
    # A prefix of more than one level: keys must come back without it.
    return S3Blobs(f"s3://{server.new_bucket()}/team/ftserve", endpoint_url=server.url)
