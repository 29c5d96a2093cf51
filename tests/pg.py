"""A private PostgreSQL cluster for tests: its own data dir, port and socket dir, stopped by PID.

Never touches the machine's default cluster. initdb refuses to run as root, so as root the
binaries run as the ``postgres`` user (created when missing) on directories it owns.
Without server binaries the PostgreSQL tests skip with the reason, or fail in CI
(``CI=1`` or ``FTSERVE_REQUIRE_POSTGRES=1``), where a skip would hide a missing backend.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest


def required() -> bool:
    return any(
        os.environ.get(name, "") not in ("", "0") for name in ("CI", "FTSERVE_REQUIRE_POSTGRES")
    )


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (in CI) the test that needs PostgreSQL."""
    if required():
        pytest.fail(f"PostgreSQL is required here (CI / FTSERVE_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(reason)


def find_bindir() -> Path | None:
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
        candidates.append(Path(out.stdout.strip()))

    def major(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major, reverse=True)
    candidates += [Path(p).parent for p in found]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class PgCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # /tmp when there is one: the postgres user can reach it (a root-only TMPDIR would not
        # do), and the socket's path stays under the 107 bytes a unix socket allows.
        short = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
        self.root = Path(tempfile.mkdtemp(prefix="ftserve-pg-", dir=short))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.port = _free_port()
        self.pid: int | None = None
        self._as_root = os.getuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        self.sockets.mkdir()
        if self._as_root:
            if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "-r", "postgres"], check=True, capture_output=True)
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        init = self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        options = (
            f"-k {self.sockets} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        started = self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.root / "log"),
            "-o", options,
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{log}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.sockets}&port={self.port}"

    def pg_ctl_stop(self, mode: str) -> None:
        """Stop the postmaster with ``pg_ctl stop -m MODE`` (fast: a clean shutdown; immediate:
        every backend killed, as when the server dies), keeping its files for
        :meth:`start_again`."""
        out = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        assert out.returncode == 0, f"pg_ctl stop failed: {out.stdout}{out.stderr}"
        self.pid = None

    def start_again(self) -> None:
        """Start a stopped cluster on its port, socket dir and data, as first started."""
        # The options it was first started with (postmaster.opts: binary, -D, dir, options...).
        opts = shlex.split((self.data / "postmaster.opts").read_text())[3:]
        out = self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.root / "log"),
            "-o", " ".join(shlex.quote(o) for o in opts),
            "-w", "-t", "60",
            "start",
        )  # fmt: skip
        assert out.returncode == 0, f"pg_ctl start failed: {out.stdout}{out.stderr}"
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown of this cluster's postmaster (by its PID), then the files go."""
        pid, self.pid = self.pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


_Cluster = TypeVar("_Cluster", bound=PgCluster)


@contextlib.contextmanager
def private_cluster(kind: type[_Cluster]) -> Iterator[_Cluster]:
    """A started cluster of ``kind`` for one test (or session), stopped and removed after; the
    test is skipped (failed when PostgreSQL is required) where the server or driver is missing."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        unavailable(f"the postgres extra is not installed ({exc})")
    bindir = find_bindir()
    if bindir is None:
        unavailable("no PostgreSQL server binaries (pg_config --bindir, /usr/lib/postgresql/*/bin)")
    assert bindir is not None
    cluster = kind(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
