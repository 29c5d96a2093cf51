"""The user commands (``ftserve files|jobs|models|chat``) run as a person runs them: the real CLI
in a subprocess, against a real server with an embedded worker, configured only by
FTSERVE_BASE_URL / FTSERVE_API_KEY in its environment."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import openai
import pytest

from tests.conftest import API_KEY, Server, chat_rows, free_port, jsonl, upload
from tests.e2e.conftest import wait_final, wait_steps

STEPS = 24  # 12 examples x 2 epochs at batch size 1


def cli_env(server: Server, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing but what the test says; nor the terminal size of whoever runs the tests
        # (pytest-xdist's workers say 80 columns): the CLI's output here is piped.
        if not k.startswith(("OPENAI_", "FTSERVE_")) and k not in ("COLUMNS", "LINES")
    }
    env.update(FTSERVE_BASE_URL=server.base_url, FTSERVE_API_KEY=API_KEY)
    env.update(extra)
    return env


def ftserve(
    server: Server,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,  # generous: a loaded CI machine, a first chat loading its model
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "ftserve", *args],
        env=cli_env(server) if env is None else env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out


class Following:
    """``jobs events ID --follow`` running in the background; its stdout read line by line."""

    def __init__(self, server: Server, job_id: str, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ftserve", "jobs", "events", job_id, "--follow", *flags],
            env=cli_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.finished = False
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.seen}"
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not printed in {timeout}s: {self.seen}")

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout)
        self.finished = True
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        out = "".join(self.seen)
        assert "Traceback" not in out + err, out + err
        return rc, out, err

    def kill(self) -> None:
        if not self.finished:
            self.proc.kill()
            self.finish()


@pytest.fixture
def following() -> Iterator[list[Following]]:
    started: list[Following] = []
    yield started
    for f in started:
        f.kill()


@pytest.fixture(scope="module")
def succeeded_job(trainer_server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A job created by the CLI from a local file, followed to its end by the CLI."""
    path = tmp_path_factory.mktemp("cli") / "train.jsonl"
    path.write_bytes(jsonl(chat_rows(12)))
    out = ftserve(
        trainer_server,
        "jobs", "create", "--model", "ftserve-tiny", "--training-file", str(path),
        "--epochs", "2", "--batch-size", "1", "--seed", "3", "--suffix", "cli", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["object"] == "fine_tuning.job" and job["model"] == "ftserve-tiny"
    assert f"Uploaded {path} as {job['training_file']}" in out.stderr

    follow = ftserve(trainer_server, "jobs", "events", job["id"], "--follow")
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert f"step {STEPS}/{STEPS}" in follow.stdout  # the bar's last state
    assert "The job has successfully completed" in follow.stdout
    assert f"Job {job['id']} succeeded: ft:ftserve-tiny:personal:cli:" in follow.stdout
    return str(job["id"])


def test_files_upload_and_list(trainer_server: Server, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(chat_rows(10)))
    up = ftserve(trainer_server, "files", "upload", str(path), "--json")
    assert up.returncode == 0, up.stderr
    file = json.loads(up.stdout)
    assert file["object"] == "file" and file["purpose"] == "fine-tune"
    assert file["filename"] == "data.jsonl" and file["bytes"] == path.stat().st_size

    listed = ftserve(trainer_server, "files", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if file["id"] in line]
    assert row.split()[:3] == [file["id"], "data.jsonl", "fine-tune"]


def test_job_get_list_events_checkpoints(trainer_server: Server, succeeded_job: str) -> None:
    client = trainer_server.client()
    job = client.fine_tuning.jobs.retrieve(succeeded_job)

    got = ftserve(trainer_server, "jobs", "get", succeeded_job)
    assert got.returncode == 0, got.stderr
    fields = dict(line.split(None, 1) for line in got.stdout.splitlines() if line.strip())
    assert fields["status"] == "succeeded"
    assert fields["fine_tuned_model"] == job.fine_tuned_model
    assert fields["trained_tokens"] == str(job.trained_tokens)
    assert "n_epochs=2" in fields["hyperparameters"] and "batch_size=1" in fields["hyperparameters"]

    listed = ftserve(trainer_server, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert isinstance(jobs, list)
    (mine,) = [j for j in jobs if j["id"] == succeeded_job]
    assert mine == client.fine_tuning.jobs.retrieve(succeeded_job).to_dict(mode="json")

    events = ftserve(trainer_server, "jobs", "events", succeeded_job)
    assert events.returncode == 0, events.stderr
    lines = events.stdout.splitlines()
    assert lines[0].endswith(f"Created fine-tuning job: {succeeded_job}")
    assert lines[-1].endswith("The job has successfully completed")
    steps = [line.split("Step ", 1)[1].split(":")[0] for line in lines if "  Step " in line]
    assert steps == [f"{n}/{STEPS}" for n in range(1, STEPS + 1)]

    # JSON lines from the stream of an ended job: every event once, oldest first, as listed.
    streamed = ftserve(trainer_server, "jobs", "events", succeeded_job, "--follow", "--json")
    assert streamed.returncode == 0, streamed.stderr
    wire = [json.loads(line) for line in streamed.stdout.splitlines()]
    listed_events = [
        e.to_dict(mode="json") for e in client.fine_tuning.jobs.list_events(succeeded_job, limit=7)
    ]
    assert wire == listed_events[::-1]

    ckpts = ftserve(trainer_server, "jobs", "checkpoints", succeeded_job)
    assert ckpts.returncode == 0, ckpts.stderr
    rows = [line.split() for line in ckpts.stdout.splitlines()[1:]]
    assert [(r[1], r[2]) for r in rows] == [
        (str(STEPS), job.fine_tuned_model),
        (str(STEPS // 2), f"{job.fine_tuned_model}:ckpt-step-{STEPS // 2}"),
    ]


def test_models_list(trainer_server: Server, succeeded_job: str) -> None:
    out = ftserve(trainer_server, "models", "list")
    assert out.returncode == 0, out.stderr
    ids = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    fine_tuned = trainer_server.client().fine_tuning.jobs.retrieve(succeeded_job).fine_tuned_model
    assert "ftserve-tiny" in ids and fine_tuned in ids


def test_failed_job_exits_1_with_its_error(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(10))
    created = ftserve(
        trainer_server,
        "jobs", "create", "--model", "ftserve-tiny", "--training-file", fid,
        "--learning-rate-multiplier", "1e30", "--epochs", "3",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.split()[1]
    assert job_id.startswith("ftjob-"), created.stdout
    out = ftserve(trainer_server, "jobs", "events", job_id, "--follow")
    assert out.returncode == 1, out.stdout + out.stderr
    error = client.fine_tuning.jobs.retrieve(job_id).error
    assert error is not None and error.code == "nan_loss"
    assert f"job {job_id} failed: {error.message}" in out.stderr
    assert "nan_loss" in out.stderr


def test_cancelled_while_following_exits_2(
    trainer_server: Server, following: list[Following]
) -> None:
    client = trainer_server.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(30)),
        hyperparameters={"n_epochs": 50},
    )
    f = Following(trainer_server, job.id)
    following.append(f)
    wait_steps(client, job.id, 3)
    client.fine_tuning.jobs.cancel(job.id)
    rc, out, _ = f.finish()
    assert rc == 2, out
    assert "Fine-tuning job cancelled" in out and f"Job {job.id} was cancelled" in out


def test_pause_and_resume_while_following(
    trainer_server: Server, following: list[Following]
) -> None:
    client = trainer_server.client(strict=False)  # "paused" is outside the SDK's status Literal
    total = 300
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(30)),
        seed=4,
        hyperparameters={"n_epochs": 10, "batch_size": 1},
    )
    f = Following(trainer_server, job.id)
    following.append(f)
    f.wait_for("Fine-tuning job started")  # following already, not coming in on a paused job
    wait_steps(client, job.id, 10)
    assert str(client.fine_tuning.jobs.pause(job.id).status) == "paused"
    f.wait_for("Job paused — waiting for resume")
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    rc, out, err = f.finish()
    assert rc == 0, out + err
    assert wait_final(client, job.id) == "succeeded"
    assert f"step {total}/{total}" in out
    assert out.count("Fine-tuning job paused") == 1
    assert "Fine-tuning job resumed from the checkpoint at step" in out


def test_follow_resumes_after_the_server_restarts(
    own_trainer_server: Server, following: list[Following]
) -> None:
    """A kill -9 of the server mid-stream: the CLI reconnects with Last-Event-ID and prints
    every event exactly once, in order."""
    srv = own_trainer_server
    srv.start()
    client = srv.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(20)),
        seed=5,
        hyperparameters={"n_epochs": 5, "batch_size": 1},
    )
    f = Following(srv, job.id, "--json")
    following.append(f)
    wait_steps(client, job.id, 20)
    srv.stop(signal.SIGKILL)
    srv.start()
    rc, out, err = f.finish(timeout=120)
    assert rc == 0, out + err
    printed = [json.loads(line)["id"] for line in out.splitlines()]
    events = srv.client().fine_tuning.jobs.list_events(job.id, limit=1000)
    assert printed == [e.id for e in events][::-1]


def test_errors_are_one_line_without_traceback(trainer_server: Server) -> None:
    unknown = ftserve(trainer_server, "jobs", "get", "ftjob-nope")
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert "Could not find fine tune: ftjob-nope" in unknown.stderr
    assert "param: fine_tune_id" in unknown.stderr and "code: fine_tune_not_found" in unknown.stderr

    bad_key = ftserve(
        trainer_server,
        "models",
        "list",
        env=cli_env(trainer_server, FTSERVE_API_KEY="sk-wrong-key"),
    )
    assert bad_key.returncode == 1
    assert "the API key came from FTSERVE_API_KEY" in bad_key.stderr

    url = f"http://127.0.0.1:{free_port()}/v1"
    down = ftserve(trainer_server, "jobs", "list", "--base-url", url)
    assert down.returncode == 1
    assert f"cannot reach the ftserve API at {url} — is `ftserve serve` running?" in down.stderr


def test_key_from_the_local_data_dir(trainer_server: Server, tmp_path: Path) -> None:
    """Without a key in the environment the CLI uses the one `ftserve serve` stored."""
    data = tmp_path / "ftserve-data"
    data.mkdir()
    (data / "api_key").write_text(API_KEY + "\n")
    env = cli_env(trainer_server)
    del env["FTSERVE_API_KEY"]
    out = ftserve(trainer_server, "models", "list", "--json", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ftserve-tiny" in [m["id"] for m in json.loads(out.stdout)]


def _streamed(client: openai.OpenAI, messages: list[Any]) -> str:
    parts = []
    with client.chat.completions.create(
        model="ftserve-tiny", messages=messages, stream=True, max_tokens=8, temperature=0
    ) as stream:
        for chunk in stream:
            parts += [c.delta.content or "" for c in chunk.choices]
    return "".join(parts)


def test_chat_with_piped_stdin(trainer_server: Server) -> None:
    out = ftserve(
        trainer_server,
        "chat", "ftserve-tiny", "--system", "Be brief.", "--max-tokens", "8",
        "--temperature", "0",
        stdin="Hello there\n\nAnd again?\n/exit\nnot sent\n",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # The same conversation through the SDK: each answer is sent back with the next question.
    client = trainer_server.client()
    messages: list[Any] = [{"role": "system", "content": "Be brief."}]
    expected = ""
    for question in ("Hello there", "And again?"):
        messages.append({"role": "user", "content": question})
        answer = _streamed(client, messages)
        assert answer
        messages.append({"role": "assistant", "content": answer})
        expected += answer + "\n"
    assert out.stdout == expected


def test_sse_framing() -> None:
    """The stream reader's framing (the WHATWG rules the server's stream follows): fields, a
    space after the colon optional, multi-line data, comments as heartbeats."""
    from ftserve.cli.follow import SseEvent, parse_sse

    lines = ["id: a", 'data: {"x":', "data:1}", "", ": ping", "", "data: {}", "", "id: b", ""]
    assert list(parse_sse(lines)) == [SseEvent("a", '{"x":\n1}'), None, SseEvent(None, "{}")]
