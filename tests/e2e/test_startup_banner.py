"""What ``ftserve serve`` prints when it is up: where the API, the dashboard and the key are.

The banner comes once the socket listens, so the address it names answers (``--port 0`` names
the port the system picked) and a server that never listens (port taken) prints none.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.conftest import Server

QUIET = {"FTSERVE_WORKERS": "0", "FTSERVE_INFERENCE": "0", "FTSERVE_LOG_LEVEL": "warning"}


def serve(data: Path, port: int, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The server and the file its output goes to (a file, not a pipe: read with a deadline)."""
    log = data.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ftserve",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            env={**os.environ, **QUIET, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def read_until(proc: subprocess.Popen[bytes], log: Path, marker: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = log.read_text(errors="replace")
        if marker in out:
            return out
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} in the output (exit {proc.returncode}):\n{out}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_first_start_on_port_0_prints_a_banner_that_answers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, log = serve(data, 0, FTSERVE_API_KEYS="")
    try:
        out = read_until(proc, log, "API key:")
        port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+), data in ", out)[1])  # type: ignore[index]
        assert port != 0
        root = f"http://127.0.0.1:{port}"
        key = (data / "api_key").read_text().strip()
        assert f"    export OPENAI_API_KEY={key}\n    export OPENAI_BASE_URL={root}/v1\n" in out
        assert f"data in {data.resolve()}\n" in out
        assert f"    API base URL:  {root}/v1  (Azure OpenAI v1 form: {root}/openai/v1)\n" in out
        assert f"    dashboard:     {root}/\n" in out
        assert f"    API key:       {data / 'api_key'}\n" in out
        # Printed once the socket listens: the address answers at once, with the printed key.
        models = httpx.get(f"{root}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200, models.text
    finally:
        stop(proc)
    # The second start reuses the key and does not print it again, but says where it is.
    proc, log = serve(data, 0, FTSERVE_API_KEYS="")
    try:
        out = read_until(proc, log, "API key:")
        assert "export OPENAI_API_KEY" not in out
        assert f"    API key:       {data / 'api_key'}\n" in out
    finally:
        stop(proc)


def test_keys_from_the_environment_are_named_as_such(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", env=QUIET)
    srv.start()
    try:
        log = srv.log()
        assert f"listening on {srv.root}, data in " in log
        assert f"    API base URL:  {srv.base_url}  (" in log
        assert "    API key:       FTSERVE_API_KEYS (environment)\n" in log
        assert "export OPENAI_API_KEY" not in log
        assert not (tmp_path / "data" / "api_key").exists()
    finally:
        srv.stop()


def test_no_banner_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc, log = serve(tmp_path / "data", taken.getsockname()[1])
        try:
            proc.wait(timeout=60)
        finally:
            stop(proc)
    out = log.read_text()
    assert proc.returncode == 3, out
    assert "address already in use" in out
    assert "listening on" not in out and "API base URL" not in out


def _get_on(conn: http.client.HTTPConnection, key: str) -> int:
    conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    response.read()
    return response.status


def test_idle_connections_stay_open_for_the_keep_alive_time(tmp_path: Path) -> None:
    # uvicorn's own 5 s would close an idle connection just as httpx (the SDK) reuses it; behind
    # a load balancer the server must outlast the balancer's idle timeout (docs/deployment.md).
    key = "sk-keepalive-test-key"
    data = tmp_path / "data"
    proc, log = serve(data, 0, FTSERVE_API_KEYS=key, FTSERVE_KEEP_ALIVE_SECONDS="8")
    try:
        out = read_until(proc, log, "API key:")
        port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+), data in ", out)[1])  # type: ignore[index]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _get_on(conn, key) == 200
            first = conn.sock
            time.sleep(6)  # past uvicorn's default
            assert _get_on(conn, key) == 200
            assert conn.sock is first  # the same connection, not a new one
            started = time.monotonic()
            assert first.recv(1) == b""  # then closed by the server, idle for 8 s
            assert 6 < time.monotonic() - started < 20
        finally:
            conn.close()
    finally:
        stop(proc)
