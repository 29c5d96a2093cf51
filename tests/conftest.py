"""Shared fixtures: a real ftserve server on a free loopback port, and official SDK clients.

The store behind the ``server`` and ``fresh_server`` fixtures (and the ``store`` of
tests/store/) is a parameter, ``backend``: the embedded SQLite file always, and PostgreSQL (a
database of its own per server or store, on the private cluster of tests/pg.py) for the tests
marked ``both_backends`` — one mark says it, on a test or a whole module
(``pytestmark = pytest.mark.both_backends``). Ids say which: ``test_x[sqlite]``,
``test_x[postgres]``. Without
PostgreSQL binaries the ``[postgres]`` tests skip with the reason, and fail in CI
(``CI=1`` / ``FTSERVE_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from ftserve.config import Settings
from ftserve.store.open import open_store
from ftserve.store.protocol import Store
from tests.pg import PgCluster, private_cluster
from tests.ports import free_port

# Marks set on collection: `postgres`, and the xdist groups of tests that share a module's state.
pytest_plugins = ["tests.collection"]

API_KEY = "sk-test-ftserve-0123456789"
# Every SDK client a test makes, closed after the test: a pooled connection left to the garbage
# collector is a ResourceWarning, and warnings are errors here.
_OPEN_CLIENTS: list[openai.OpenAI] = []
OTHER_ORG_KEY = "sk-test-other-org-0123456789"


@dataclass
class Server:
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    database_url: str | None = None  # None: the SQLite file in data_dir

    @property
    def settings(self) -> Settings:
        """Where this server keeps its data, for tests that open its store themselves."""
        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    def open_store(self) -> Store:
        """The server's store (SQLite file or PostgreSQL database), opened here; close it."""
        return open_store(self.settings)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    @property
    def azure_url(self) -> str:
        return self.root + "/openai/v1"

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "FTSERVE_API_KEYS": f"{API_KEY},other:{OTHER_ORG_KEY}",
            "FTSERVE_LOG_LEVEL": "warning",
            **self.env,
        }
        if self.database_url:
            env["FTSERVE_DATABASE_URL"] = self.database_url
        self.log_path = self.data_dir.with_suffix(".log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ftserve",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.root + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(
        self,
        *,
        azure: bool = False,
        api_key_header: bool = False,
        strict: bool = True,
        key: str = API_KEY,
    ) -> openai.OpenAI:
        headers = {"api-key": key} if api_key_header else None
        client = openai.OpenAI(
            api_key="unused-when-api-key-header" if api_key_header else key,
            base_url=self.azure_url if azure else self.base_url,
            max_retries=0,
            default_headers=headers,
            _strict_response_validation=strict,
        )
        _OPEN_CLIENTS.append(client)
        return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


_PG_TEMPLATE = "ftserve_api_template"
_pg_names = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster for the whole session (unit and API tests share it)."""
    with private_cluster(PgCluster) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_server_template(pg_cluster: PgCluster) -> str:
    """A database that ``ftserve migrate`` (the command, as an operator runs it) brought to the
    current schema; each server's database is a copy of it."""
    import psycopg

    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {_PG_TEMPLATE}")
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", "migrate"],
        env={**os.environ, "FTSERVE_DATABASE_URL": pg_cluster.url(_PG_TEMPLATE)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"ftserve migrate failed:\n{out.stdout}{out.stderr}"
    return _PG_TEMPLATE


def new_pg_database(cluster: PgCluster, template: str) -> str:
    """A new database on the cluster, a copy of ``template``; its URL."""
    return create_database(cluster.url(), template)


def create_database(pg_url: str, template: str) -> str:
    """A new database on the cluster of the maintenance database ``pg_url``, a copy of
    ``template`` ("template0": an empty one); its URL."""
    import psycopg

    name = f"t{next(_pg_names)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return pg_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster) -> str:
    """The cluster's maintenance database (superuser ``postgres``, trust auth, unix socket)."""
    return pg_cluster.url()


@pytest.fixture
def pg_empty_url(pg_url: str) -> str:
    """A new database without the ftserve schema."""
    return create_database(pg_url, "template0")


@pytest.fixture
def pg_store_url(pg_url: str, pg_server_template: str) -> str:
    """A new database, migrated (a copy of the template ``ftserve migrate`` made)."""
    return create_database(pg_url, pg_server_template)


BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on a backend runs on SQLite; those marked ``both_backends`` (themselves or
    their module), on PostgreSQL too."""
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize(
            "backend", BACKENDS if both else BACKENDS[:1], indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    name: str = getattr(request, "param", "sqlite")
    return name


def database_url_for(request: pytest.FixtureRequest, backend: str) -> str | None:
    """None for SQLite; for PostgreSQL a new migrated database of its own."""
    if backend == "sqlite":
        return None
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return new_pg_database(cluster, request.getfixturevalue("pg_server_template"))


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    # No embedded worker: these jobs are about the wire contract, not training. Generation is
    # real (ftserve-tiny), but capped small, so fuzzed completion requests stay quick.
    srv = Server(
        tmp_path_factory.mktemp(f"srv-{backend}") / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_MAX_GENERATION_TOKENS": "64"},
        database_url=database_url_for(request, backend),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of one's own, for tests that restart or kill it."""
    srv = Server(tmp_path / "data", database_url=database_url_for(request, backend))
    yield srv
    srv.stop(signal.SIGKILL)


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return server.client()


def chat_rows(n: int, *, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(start, start + n)
    ]


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def upload(client: openai.OpenAI, rows: list[dict[str, object]], name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, jsonl(rows)), purpose="fine-tune").id


def wait_status(
    client: openai.OpenAI, job_id: str, statuses: set[str], timeout: float = 30.0
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = client.fine_tuning.jobs.retrieve(job_id).status
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.05)
