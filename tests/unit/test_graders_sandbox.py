"""The python graders' bubblewrap sandbox, tried as an attacker would: each escape ends as that
sample's runtime error (reward 0, details), and the other samples of its batch are unaffected.
A batch runs in one sandbox; a sample that ends it costs one fresh sandbox for the rest."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftserve.errors import ApiError
from ftserve.graders import grading, sandbox
from ftserve.graders.schemas import check_grader
from ftserve.graders.templates import Sample
from tests.sandboxed import require_sandbox

# Each attack by name; "ok" scores 1 (the bystander whose result must not change).
ATTACKS = """
import ctypes, os, socket, time

def grade(sample, item):
    k = item["k"]
    if k == "loop":
        while True:
            pass
    if k == "stubborn":  # catches the CPU limit's exception and goes on
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    if k == "sleep":
        time.sleep(600)
    if k == "alloc":
        chunks = []
        while True:
            chunks.append(bytearray(256 << 20))
    if k == "fork_bomb":
        while True:
            os.fork()
    if k == "exit":
        os._exit(0)
    if k == "read":
        return float(len(open(item["path"], "rb").read()))
    if k == "write":
        open(item["path"], "w").write("x")
    if k == "environ":
        return float(any(item["secret"] in v for v in os.environ.values()))
    if k == "connect":
        socket.create_connection((item["host"], item["port"]), timeout=2)
    if k == "userns":  # where it could mount a tmpfs that no memory limit counts
        if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
            raise OSError(ctypes.get_errno(), "no user namespace")
    return 1.0
"""


@pytest.fixture(autouse=True)
def _sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    require_sandbox()
    monkeypatch.setattr(sandbox, "CPU_SECONDS", 1)
    monkeypatch.setattr(sandbox, "WALL_SECONDS", 4)  # CPU first, even on a loaded machine
    monkeypatch.setattr(sandbox, "MEMORY_BYTES", 768 << 20)  # the test's allocation stays small
    yield


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of samples each sandbox started for."""
    started: list[int] = []
    session = sandbox._session

    def counted(source: str, jobs: Any) -> list[sandbox.Result]:
        started.append(len(jobs))
        return session(source, jobs)

    monkeypatch.setattr(sandbox, "_session", counted)
    return started


def _grade(items: list[dict[str, Any]]) -> list[sandbox.Result]:
    return sandbox.run_many(ATTACKS, [({"output_text": ""}, item) for item in items])


def test_limits_end_the_sample_not_the_batch(sessions: list[int]) -> None:
    attacks = ["loop", "stubborn", "sleep", "alloc", "fork_bomb", "exit"]
    items = [{"k": k} for a in attacks for k in ("ok", a)] + [{"k": "ok"}]
    results = _grade(items)
    assert [r.score for r in results[::2]] == [1.0] * (len(attacks) + 1)
    details = {a: r.error for a, r in zip(attacks, results[1::2], strict=True)}
    assert all(r.score is None and r.server_error is None for r in results[1::2])
    assert details["loop"] == "the grader ran past its CPU time limit (1 s)"
    # The stubborn one may be caught by the CPU timer or, past it, by the wall clock.
    assert "the grader ran past its" in (details["stubborn"] or "")
    assert details["sleep"] == "the grader ran past its wall-clock limit (4 s)"
    assert details["alloc"] == "MemoryError"
    assert "Resource temporarily unavailable" in (details["fork_bomb"] or "")
    assert (details["exit"] or "").startswith("the grader ended its sandbox (exit 0)")
    # One sandbox for the batch, a fresh one after each sample that ended its own (at most:
    # the stubborn loop survives its timers or not).
    assert sessions[0] == len(items) and 2 <= len(sessions) <= 3


def test_one_sandbox_grades_a_whole_batch(sessions: list[int]) -> None:
    source = "import numpy as np\ndef grade(sample, item):\n    return np.float32(item['x'])\n"
    results = sandbox.run_many(source, [({}, {"x": x / 8}) for x in range(8)])
    assert [r.score for r in results] == [x / 8 for x in range(8)]
    assert sessions == [8]


def test_no_files_but_pythons(tmp_path: Path) -> None:
    secret = tmp_path / "data" / "ftserve.db"
    secret.parent.mkdir()
    secret.write_text("organization secrets")
    readable = [str(secret), "/etc/shadow", "/etc/passwd", __file__, str(Path.cwd() / "README.md")]
    results = _grade([{"k": "read", "path": p} for p in readable])
    for path, result in zip(readable, results, strict=True):
        assert result.error == f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'"
    # Python itself is there, read-only, and so is the rest; /tmp is the sandbox's own.
    paths = [json.__file__, "/x", "/dev/shm/x", "/tmp/x"]
    written = _grade([{"k": "write", "path": p} for p in paths])
    assert all("Read-only file system" in (w.error or "") for w in written[:-1])
    assert written[-1].score == 1.0


def test_no_user_namespaces() -> None:
    [result] = _grade([{"k": "userns"}])
    assert result.score is None and "no user namespace" in (result.error or "")


def test_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret-42")
    monkeypatch.setenv("FTSERVE_API_KEYS", "org:sk-server-secret-42")
    [result] = _grade([{"k": "environ", "secret": "sk-server-secret-42"}])
    assert result.score == 0.0


def test_no_network_not_even_the_hosts_loopback() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        results = _grade(
            [
                {"k": "connect", "host": "127.0.0.1", "port": port},
                {"k": "connect", "host": "1.1.1.1", "port": 443},
                {"k": "connect", "host": "example.com", "port": 443},
            ]
        )
    assert results[0].error == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert "Network is unreachable" in (results[1].error or "")
    assert "gaierror" in (results[2].error or "")


def test_grade_batch_is_grade_on_each(sessions: list[int]) -> None:
    multi = check_grader(
        {
            "type": "multi",
            "name": "m",
            "graders": {
                "py": {"type": "python", "name": "py", "source": ATTACKS},
                "ref": {
                    "type": "string_check",
                    "name": "ref",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.k}}",
                    "operation": "eq",
                },
            },
            "calculate_output": "0.5 * py + 0.5 * ref",
        },
        "grader",
    )
    samples = [Sample("ok"), Sample("exit"), Sample("nope"), Sample("ok")]
    items = [{"k": "ok"}, {"k": "exit"}, {"k": "ok"}, {"k": "loop"}]
    batch = grading.grade_batch(multi, samples, items)
    assert sessions == [4, 2]  # the batch, then what is left after the sample that exited
    one_by_one = [grading.grade(multi, s, i) for s, i in zip(samples, items, strict=True)]
    assert batch == one_by_one
    assert [o.reward for o in batch] == [1.0, 0.5, 0.5, 0.0]
    assert batch[1].errors["python_grader_runtime_error"]
    assert "CPU time limit" in batch[3].errors["python_grader_runtime_error_details"]
    top = grading.grade_batch(multi["graders"]["py"], samples, items)
    assert [o.reward for o in top] == [1.0, 0.0, 1.0, 0.0]


def test_without_bubblewrap_python_graders_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_command", lambda: None)
    [result] = sandbox.run_many(ATTACKS, [({}, {"k": "ok"})])
    assert result.score is None and "apt-get install bubblewrap" in (result.server_error or "")
    monkeypatch.setattr(sandbox, "available", lambda: False)
    with pytest.raises(ApiError) as e:
        check_grader({"type": "python", "name": "p", "source": ATTACKS}, "grader")
    assert e.value.param == "grader.type" and "apt-get install bubblewrap" in e.value.message
