"""Escapes from a python grader, through POST /fine_tuning/alpha/graders/run with the official
SDK: each answers 200 with reward 0 and the runtime error flag and its details, and the server
goes on serving (the next sample scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import API_KEY, Server
from tests.sandboxed import require_sandbox

SOURCE = """
import os, socket

def grade(sample, item):
    k = item["k"]
    if k == "read":
        return float(len(open(item["path"], "rb").read()))
    if k == "environ":
        return float(any(item["secret"] in f"{k}={v}" for k, v in os.environ.items()))
    if k == "connect":
        socket.create_connection(("127.0.0.1", item["port"]), timeout=2)
    if k == "fork_bomb":
        while True:
            os.fork()
    if k == "alloc":
        x = bytearray(64 << 30)
    if k == "exit":
        os._exit(1)
    return 1.0
"""
GRADER = {"type": "python", "name": "escape", "source": SOURCE}
CHECK = {
    "type": "string_check",
    "name": "c",
    "input": "{{sample.output_text}}",
    "reference": "{{item.y}}",
    "operation": "eq",
}


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_sandbox()


def _run(server: Server, item: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    graders = server.client().fine_tuning.alpha.graders
    run = graders.run(grader=GRADER, model_sample="x", item=item)  # type: ignore[arg-type]
    return run.reward, {k: v for k, v in run.metadata.errors.model_dump().items() if v}


@pytest.mark.parametrize(
    ("item", "details"),
    [
        ({"k": "read", "path": "DATA_DIR/ftserve.db"}, "No such file or directory"),
        ({"k": "connect", "port": "PORT"}, "ConnectionRefusedError"),
        ({"k": "fork_bomb"}, "Resource temporarily unavailable"),
        ({"k": "alloc"}, "MemoryError"),
        ({"k": "exit"}, "the grader ended its sandbox (exit 1)"),
    ],
)
def test_escapes_are_runtime_errors(server: Server, item: dict[str, Any], details: str) -> None:
    # The server's own data and port, known only here.
    fill = {"DATA_DIR": str(server.data_dir), "PORT": server.port}
    item = {k: fill.get(v, v) if k == "port" else v for k, v in item.items()}
    if "path" in item:
        item["path"] = item["path"].replace("DATA_DIR", fill["DATA_DIR"])
        assert (server.data_dir / "ftserve.db").exists()
    reward, errors = _run(server, item)
    assert reward == 0.0 and errors["python_grader_runtime_error"] is True
    assert details in errors["python_grader_runtime_error_details"]
    assert _run(server, {"k": "ok"}) == (1.0, {})


def test_the_servers_api_keys_do_not_reach_the_grader(server: Server) -> None:
    # The test server holds its keys in FTSERVE_API_KEYS; the grader sees none of them, nor
    # any other variable of the server's, only the sandbox's own few.
    assert _run(server, {"k": "environ", "secret": API_KEY}) == (0.0, {})
    assert _run(server, {"k": "environ", "secret": "FTSERVE_"}) == (0.0, {})
    assert _run(server, {"k": "environ", "secret": "PATH=/usr/bin:/bin"}) == (1.0, {})


def test_python_graders_can_be_turned_off(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"FTSERVE_PYTHON_GRADERS": "0", "FTSERVE_WORKERS": "0"})
    server.start()
    try:
        graders = server.client().fine_tuning.alpha.graders
        multi = {
            "type": "multi",
            "name": "m",
            "graders": [GRADER],
            "calculate_output": "escape",
        }
        for grader, param in ((GRADER, "grader.type"), (multi, "grader.graders[0].type")):
            for run_it in (False, True):
                with pytest.raises(openai.BadRequestError) as e:
                    if run_it:
                        graders.run(grader=grader, model_sample="x")  # type: ignore[arg-type]
                    else:
                        graders.validate(grader=grader)  # type: ignore[arg-type]
                assert isinstance(e.value.body, dict) and e.value.body["param"] == param
                assert "FTSERVE_PYTHON_GRADERS=0" in e.value.body["message"]
        run = graders.run(grader=CHECK, model_sample="x", item={"y": "x"})  # type: ignore[arg-type]
        assert run.reward == 1.0
    finally:
        server.stop()
