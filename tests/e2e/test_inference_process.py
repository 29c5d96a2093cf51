"""The inference process dies mid-request (kill -9): the request fails in the OpenAI way, the
API stays up, and the next request starts a new inference process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from ftserve.modeling.tiny_model import build_byte_tokenizer
from tests.conftest import API_KEY, Server

BEARER = {"Authorization": f"Bearer {API_KEY}"}
HELLO = [{"role": "user", "content": "Hello"}]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def inference_pid(server: Server) -> int:
    assert server.proc is not None
    for child in _children(server.proc.pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            return child
    raise AssertionError("no inference process among the server's children")


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "0"})
    server.start()
    yield server
    server.stop()


def _no_stop_tokens() -> dict[str, int]:
    """Bias every special token away, so a random-weights model keeps generating."""
    tok = build_byte_tokenizer()
    return {str(i): -100 for i in tok.all_special_ids}


def test_kill_during_a_stream_then_recover(srv: Server) -> None:
    with httpx.Client(base_url=srv.base_url, headers=BEARER, timeout=120) as http:
        warm = http.post(
            "/chat/completions", json={"model": "ftserve-tiny", "messages": HELLO, "max_tokens": 2}
        )
        assert warm.status_code == 200, warm.text
        first_pid = inference_pid(srv)
        body = {
            "model": "ftserve-tiny",
            "messages": HELLO,
            "max_tokens": 2000,
            "n": 2,
            "stream": True,
            "logit_bias": _no_stop_tokens(),
        }
        events: list[str] = []
        with http.stream("POST", "/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            for line in lines:
                if line.startswith("data: ") and '"content":"' in line and '"role"' not in line:
                    os.kill(first_pid, signal.SIGKILL)
                    break
            events = [line[len("data: ") :] for line in lines if line]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])
        assert set(error) == {"error"}
        assert error["error"]["type"] == "server_error"
        assert "inference process stopped" in error["error"]["message"]
        # The API stayed up; the next request starts a new inference process and succeeds.
        assert http.get(srv.root + "/health").status_code == 200
        again = http.post(
            "/chat/completions", json={"model": "ftserve-tiny", "messages": HELLO, "max_tokens": 3}
        )
        assert again.status_code == 200, again.text
        assert again.json()["choices"][0]["finish_reason"] in ("stop", "length")
        assert inference_pid(srv) != first_pid
        assert "Traceback" not in srv.log()


def test_kill_before_the_answer_is_a_500(srv: Server) -> None:
    with httpx.Client(base_url=srv.base_url, headers=BEARER, timeout=120) as http:
        assert (
            http.post(
                "/completions", json={"model": "ftserve-tiny", "prompt": "a", "max_tokens": 1}
            ).status_code
            == 200
        )
        pid = inference_pid(srv)
        result: dict[str, httpx.Response] = {}

        def slow() -> None:
            result["r"] = http.post(
                "/completions",
                json={
                    "model": "ftserve-tiny",
                    "prompt": "a",
                    "max_tokens": 2000,
                    "n": 2,
                    "logit_bias": _no_stop_tokens(),
                },
            )

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        thread.join(60)
        resp = result["r"]
        assert resp.status_code == 500, resp.text[:300]
        err = resp.json()["error"]
        assert err["type"] == "server_error" and err["param"] is None
        after = http.post(
            "/completions", json={"model": "ftserve-tiny", "prompt": "a", "max_tokens": 2}
        )
        assert after.status_code == 200, after.text


def _cpu_seconds(pid: int) -> float:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.parametrize("route", ["chat/completions", "completions"])
def test_a_client_that_leaves_a_long_request_stops_its_generation(srv: Server, route: str) -> None:
    body: dict[str, object] = {
        "model": "ftserve-tiny",
        "max_tokens": 1900,
        "temperature": 0,
        "logit_bias": _no_stop_tokens(),
    }
    body.update({"messages": HELLO} if route.startswith("chat") else {"prompt": "Hello"})
    with httpx.Client(base_url=srv.base_url, headers=BEARER, timeout=30) as http:
        warm = {**body, "max_tokens": 2}
        assert http.post(f"/{route}", json=warm).status_code == 200  # the process is up
        pid = inference_pid(srv)
        with pytest.raises(httpx.TimeoutException):
            http.post(f"/{route}", json=body, timeout=0.5)  # gives up, closes the connection
        time.sleep(1.0)  # the disconnect reaches the server, the request is cancelled
        before = _cpu_seconds(pid)
        time.sleep(1.5)
        # 1,900 tokens take many seconds here; an abandoned request would keep a core busy.
        assert _cpu_seconds(pid) - before < 0.3
        assert http.post(f"/{route}", json=warm).status_code == 200
