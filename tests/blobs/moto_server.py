"""A real S3-API server on loopback: moto's server mode (``python -m moto.server``) in a process
of its own, so its memory is not the test process's (the streaming tests measure that), and an
S3 client for the tests' own look at the bucket. moto accepts any credentials; the tests set
dummy ones so boto3's chain never looks further (instance metadata, profiles)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.conftest import free_port

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "ftserve-test",
    "AWS_SECRET_ACCESS_KEY": "ftserve-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_buckets = itertools.count()


class MotoServer:
    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **AWS_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{self.log_path.read_text()}")
            try:
                httpx.get(self.url + "/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_bytes(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def client(self) -> Any:
        """One S3 client for the tests' own look at the server (made once: a client costs
        about a second of CPU to build)."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session(
                aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            ).client("s3", endpoint_url=self.url)
        return self._client

    def new_bucket(self) -> str:
        name = f"ftserve-test-{next(_buckets)}-{os.getpid()}"
        self.client().create_bucket(Bucket=name)
        return name
