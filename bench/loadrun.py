"""Servers under load on loopback: start and stop a server process, serve a fixed page as the
baseline, drive a server with wrk and read its CPU per request; the machine and stack lines
every benchmark prints."""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

API_KEY = "sk-bench-ftserve-0123456789"
LUA_SCRIPT = Path(__file__).resolve().with_name("wrk_cursors.lua")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, *, auth: bool = True, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"} if auth else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(self.port, "/health", auth=False, timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} server did not answer /health:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (uvicorn runs in this one process)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_fixed(port: int, body_path: Path) -> None:
    """The baseline server: uvicorn + Starlette answering every events request with one page.

    Same uvicorn options as ``ftserve serve`` (cli/main.py) at log level warning, same route
    template (so routing does the same path match), no auth, no store: what is left is the
    framework's own cost per request.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    body = body_path.read_bytes()

    async def page(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(
        routes=[
            Route("/v1/fine_tuning/jobs/{job_id}/events", page, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
    )


# -- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_us: float  # server CPU per request, from /proc: independent of wrk's share
    other_cpu: float  # cores' worth of CPU used by neither the server nor wrk during the run

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text: str) -> tuple[float, float, float, int, int, int]:
    """req/s, p50 ms, p99 ms, requests, non-2xx, socket errors from ``wrk --latency`` output."""

    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text, re.MULTILINE)
        if m is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{text}")
        return m

    def latency(pct: str) -> float:
        m = need(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(m.group(1)) * _UNITS_MS[m.group(2)]

    rps = float(need(r"^Requests/sec:\s+([\d.]+)").group(1))
    requests = int(need(r"^\s+(\d+) requests in").group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non_2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock = sum(int(g) for g in m.groups()) if m else 0
    return rps, latency("50"), latency("99"), requests, non_2xx, sock


def run_wrk(
    server: Server, paths_file: Path, duration: float, connections: int, seed: int
) -> WrkResult:
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
        "-H", f"Authorization: Bearer {API_KEY}", "-s", str(LUA_SCRIPT),
        f"http://127.0.0.1:{server.port}/", "--", str(paths_file), str(seed),
    ]  # fmt: skip
    cpu0, busy0, kids0 = server.cpu_seconds(), busy_cpu_seconds(), children_cpu_seconds()
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    wall = time.monotonic() - t0
    cpu = server.cpu_seconds() - cpu0
    wrk_cpu = children_cpu_seconds() - kids0  # wrk is the only child reaped in between
    other = max(0.0, busy_cpu_seconds() - busy0 - cpu - wrk_cpu) / wall
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    rps, p50, p99, requests, non_2xx, sock = parse_wrk(out.stdout)
    per_req = cpu / max(requests, 1) * 1e6
    return WrkResult(rps, p50, p99, requests, non_2xx, sock, per_req, other)


def busy_cpu_seconds() -> float:
    """Non-idle CPU time of the whole machine so far, all cores (first line of /proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_line() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    return f"{os.cpu_count()} cores{mem}, {cpu or platform.machine()}"


def versions_line() -> str:
    import starlette
    import uvicorn

    extras = []
    for mod in ("uvloop", "httptools"):
        try:
            extras.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            extras.append(f"no {mod}")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_v = (wrk.stdout + wrk.stderr).split()[:2]
    return (
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__} "
        f"({', '.join(extras)}), starlette {starlette.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {' '.join(wrk_v)}"
    )
