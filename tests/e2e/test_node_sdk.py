"""The official openai-node SDK (v6, pinned in tests/node/package-lock.json) against a real
training server: tests/node/sdk_flow.mjs uploads, fine-tunes ftserve-tiny, auto-pages the events
two at a time with ``for await``, lists checkpoints and chats with the fine-tuned model, whole and
streamed, asserting as it goes. Here the Python SDK reads the same job and must see the same
events, checkpoints and answer. tests/node/responses_stream.mjs streams the Responses API (raw
events and the SDK's stream helper, continuing a stored response), on a server of its own.

Needs node (≥ 20) and, the first time, npm: ``scripts/setup`` runs ``npm ci`` in tests/node, and
so does this module when node_modules is missing or older than the lock file. Without them the
test skips and says why; with ``FTSERVE_REQUIRE_NODE=1`` (CI) it fails instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY, Server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
# Written after a successful `npm ci`: the lock file it installed. scripts/setup writes the same.
STAMP = NODE_DIR / "node_modules" / ".ftserve-lock.sha256"
MIN_NODE = 20  # openai@6 runs on 20; openai@7 needs 22


def unavailable(reason: str) -> None:
    if os.environ.get("FTSERVE_REQUIRE_NODE") == "1":
        pytest.fail(f"FTSERVE_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


def lock_digest() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


def installed() -> bool:
    return STAMP.is_file() and STAMP.read_text().strip() == lock_digest()


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/node's packages installed as the lock file says."""
    node = shutil.which("node")
    if node is None:
        unavailable("no `node` on PATH (Debian: apt-get install nodejs npm)")
    assert node is not None
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE:
        unavailable(f"node {version} is older than {MIN_NODE}, which openai@6 needs")
    if not installed():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("tests/node/node_modules is not installed and there is no `npm`")
        assert npm is not None
        out = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, f"npm ci in {NODE_DIR} failed:\n{out.stdout}{out.stderr}"
        STAMP.write_text(lock_digest() + "\n")
    return node


def test_the_node_sdk_runs_the_whole_loop(node: str, trainer_server: Server) -> None:
    # Only the two variables a user sets: anything else OPENAI_* from the caller's environment
    # (an organization, a project) would change the requests the SDK makes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {"OPENAI_BASE_URL": trainer_server.base_url, "OPENAI_API_KEY": API_KEY}
    try:
        out = subprocess.run(
            [node, "sdk_flow.mjs"],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"node sdk_flow.mjs did not finish in 420 s:\n{exc.stdout!r}\n{exc.stderr!r}\n"
            f"server log:\n{trainer_server.log()}"
        ) from None
    report = f"node sdk_flow.mjs exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, report
    [line] = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")] or [""]
    assert line, report
    seen = json.loads(line.removeprefix("RESULT "))

    # What the Python SDK reads of the same job: the same events in the same order (one page
    # here, 2 a page there), the same checkpoints, the same greedy answer.
    client = trainer_server.client()
    job = client.fine_tuning.jobs.retrieve(seen["job_id"])
    assert job.status == "succeeded" and job.fine_tuned_model == seen["fine_tuned_model"]
    page = client.fine_tuning.jobs.list_events(job.id, limit=100)
    assert not page.has_more
    assert [e.id for e in page.data] == seen["event_ids"]
    assert len(seen["event_ids"]) > 20  # many pages of 2 in node
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id, limit=100)
    assert [c.id for c in ckpts.data] == seen["checkpoint_ids"]
    answer = client.chat.completions.create(
        model=seen["fine_tuned_model"],
        messages=[{"role": "user", "content": "What is 2 plus 2?"}],
        temperature=0,
        max_tokens=12,
    )
    assert answer.choices[0].message.content == seen["content"]


def test_the_node_sdk_streams_responses(node: str, tmp_path: Path) -> None:
    server = Server(
        tmp_path / "data",
        env={"FTSERVE_WORKERS": "0", "FTSERVE_MAX_GENERATION_TOKENS": "64"},
    )
    server.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": API_KEY}
        out = subprocess.run(
            [node, "responses_stream.mjs"],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        report = f"node responses_stream.mjs exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        assert out.returncode == 0, report
        [line] = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")] or [""]
        assert line, report
        seen = json.loads(line.removeprefix("RESULT "))
        # What node streamed is what was stored, and the second continued the first.
        client = server.client()
        assert client.responses.retrieve(seen["first"]).output_text == seen["text"]
        second = client.responses.retrieve(seen["second"])
        assert second.output_text == seen["second_text"]
        items = client.responses.input_items.list(second.id, order="asc")
        assert [getattr(i, "role", None) for i in items.data] == ["user", "assistant", "user"]
    finally:
        server.stop()
