"""``ftserve inference`` alone, and an API server that sends its generations there
(FTSERVE_INFERENCE_URL) instead of spawning an inference process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import API_KEY, OTHER_ORG_KEY, Server, free_port
from tests.e2e.test_inference_process import _children

KEYS = f"{API_KEY},other:{OTHER_ORG_KEY}"
HELLO = [{"role": "user", "content": "Hello"}]


class InferenceServer:
    def __init__(self, data_dir: Path, port: int, keys: str = KEYS) -> None:
        self.data_dir, self.port, self.keys = data_dir, port, keys
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FTSERVE_API_KEYS": self.keys, "FTSERVE_LOG_LEVEL": "warning"}
        cmd = [sys.executable, "-m", "ftserve", "inference", "--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [*cmd, "--data-dir", str(self.data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, InferenceServer]]:
    port = free_port()
    inference = InferenceServer(tmp_path / "data", port)
    inference.start()
    api = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_INFERENCE_URL": f"127.0.0.1:{port}"},
    )
    api.start()
    yield api, inference
    api.stop()
    inference.stop()


def ask(client: openai.OpenAI) -> str:
    answer = client.chat.completions.create(
        model="ftserve-tiny", messages=HELLO, temperature=0, max_tokens=5
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    return answer.choices[0].message.content or ""


def test_the_api_generates_through_a_separate_inference_server(
    pair: tuple[Server, InferenceServer],
) -> None:
    api, inference = pair
    client = api.client()
    first = ask(client)
    assert api.proc is not None
    assert _children(api.proc.pid) == []  # nothing spawned: the generation ran over there
    assert inference.proc is not None and _children(inference.proc.pid) == []

    # The inference server dies: requests fail cleanly in the envelope, the API stays up ...
    inference.stop()
    with pytest.raises(openai.InternalServerError) as info:
        ask(client)
    assert info.value.status_code == 500
    assert "not reachable" in str(info.value) or "stopped" in str(info.value)
    assert client.models.list().data  # ... and keeps serving everything else
    # ... and once it is back, the next request reconnects and gets the same greedy text.
    inference.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert ask(client) == first
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_a_peer_without_the_keys_cannot_connect(tmp_path: Path) -> None:
    port = free_port()
    inference = InferenceServer(tmp_path / "data", port, keys="sk-some-other-key-0123")
    inference.start()
    api = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_INFERENCE_URL": f"127.0.0.1:{port}"},
    )
    api.start()
    try:
        with pytest.raises(openai.InternalServerError, match="refused this server's credentials"):
            ask(api.client())
        assert inference.proc is not None and inference.proc.poll() is None  # still serving
    finally:
        api.stop()
        inference.stop()
