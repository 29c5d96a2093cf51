"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by playwright's own
driver from its wheel; ``playwright install`` is never needed) against a real training server.

A person's path through it: open a job's page while it trains, enter the key in the key form,
watch the chart gain points, see the job succeed with one plotted point per metrics event (as
counted through the API), follow the link to chat with the fine-tuned model and see the answer
arrive in pieces; upload a file and start a job from the form, then pause, resume and cancel it
with the buttons. Alongside: no page, script or request URL carries the key.

Screenshots go to ``$FTSERVE_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the repo root).
Without Chromium or playwright the module skips and says why, unless
``FTSERVE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from ftserve.web.routes import load_assets
from tests.conftest import API_KEY, Server, chat_rows, jsonl, upload

CHROMIUM = Path("/usr/bin/chromium")
# Without these, Chromium on a closed network spends its time on update, sync and QUIC probes.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("FTSERVE_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
LONG_JOB = {"n_epochs": 20, "batch_size": 1}  # 40 rows: 800 steps, ~10 s of training or more
TIMEOUT_MS = 120_000

# The plotted vertices of one chart series, counted from the SVG the page drew.
POINTS_JS = """(series) => {
  const line = document.querySelector(`#chart-loss polyline[data-series="${series}"]`);
  return line ? line.getAttribute("points").trim().split(/\\s+/).length : 0;
}"""


def _unavailable(reason: str) -> None:
    if os.environ.get("FTSERVE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FTSERVE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download)")
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


class Tab:
    """A browser tab of its own (fresh session storage) that records every URL it requests."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda dialog: dialog.accept())

    def enter_key(self) -> None:
        """Type the key into the key form and send it, as a person would."""
        self.page.wait_for_selector("#key-form", state="visible")
        self.page.fill("#api-key", API_KEY)
        self.page.click("#key-form button[type=submit]")
        self.page.wait_for_selector("#app", state="visible")

    def status(self) -> str:
        return str(self.page.text_content("#job-status"))

    def wait_status(self, *statuses: str) -> None:
        self.page.wait_for_function(
            "(wanted) => wanted.includes(document.querySelector('#job-status').textContent)",
            arg=list(statuses),
        )

    def points(self, series: str = "train_loss") -> int:
        return int(self.page.evaluate(POINTS_JS, series))

    def buttons(self) -> dict[str, bool]:
        """Which of cancel, pause, resume the page offers (enabled)."""
        return {
            name: self.page.is_enabled(f"#btn-{name}") for name in ("cancel", "pause", "resume")
        }

    def shoot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_key_kept_out(self) -> None:
        """No URL the tab requested carries the key; every API request sent it as a header;
        nothing but session storage keeps it (no cookie, no local storage)."""
        assert self.requests, "the tab made no requests"
        for request in self.requests:
            assert API_KEY not in request.url, request.url
            if "/v1/" in request.url:
                assert request.headers.get("authorization") == f"Bearer {API_KEY}", request.url
        assert self.context.cookies() == []
        assert self.page.evaluate("() => localStorage.length") == 0
        assert API_KEY not in self.page.content()
        assert self.errors == [], self.errors

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    t = Tab(browser)
    yield t
    t.close()


def metrics_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    """Every metrics event of the job, through the API's pages (the SDK follows ``after``)."""
    return [
        e for e in client.fine_tuning.jobs.list_events(job_id, limit=100) if e.type == "metrics"
    ]


def streams_events(srv: Server, job_id: str) -> bool:
    """Whether this server answers ``?stream=true`` with server-sent events (a finished job's
    stream ends by itself)."""
    url = f"{srv.base_url}/fine_tuning/jobs/{job_id}/events"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.stream("GET", url, params={"stream": "true"}, headers=headers, timeout=30) as resp:
        return resp.headers.get("content-type", "").startswith("text/event-stream")


def test_watch_a_job_train_live_then_chat_with_its_model(trainer_server: Server, tab: Tab) -> None:
    srv = trainer_server
    client = srv.client()
    training = upload(client, chat_rows(40))
    validation = upload(client, chat_rows(8, start=100), "valid.jsonl")
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=training,
        validation_file=validation,
        seed=7,
        suffix="dashboard",
        hyperparameters=LONG_JOB,
    )
    page = tab.page
    page.goto(f"{srv.root}/jobs/{job.id}")
    tab.enter_key()

    # Plotted points, sampled while the API says the job is running: they must grow.
    seen_running: list[int] = []
    offered_while_running: dict[str, bool] | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        before = client.fine_tuning.jobs.retrieve(job.id).status
        count = tab.points()
        after = client.fine_tuning.jobs.retrieve(job.id).status
        if after in ("succeeded", "failed", "cancelled"):
            break
        if before == after == "running" and count:
            seen_running.append(count)
            if offered_while_running is None and tab.status() == "running":
                offered_while_running = tab.buttons()
        time.sleep(0.25)
    assert len(set(seen_running)) >= 3, f"the chart did not grow while training: {seen_running}"
    assert seen_running == sorted(seen_running), seen_running
    assert offered_while_running == {"cancel": True, "pause": True, "resume": False}

    tab.wait_status("succeeded")
    expected = metrics_events(client, job.id)
    total_steps = expected[0].data["total_steps"]
    assert len(expected) == total_steps == 800
    page.wait_for_function(f"() => ({POINTS_JS})('train_loss') === {len(expected)}")
    # The last metrics event is written before the job turns succeeded, so the last
    # sample taken while "running" may already hold every point: >=, not >.
    assert tab.points() == len(expected) >= seen_running[-1]
    valid = [e for e in expected if "valid_loss" in e.data]
    assert valid and tab.points("valid_loss") == len(valid)
    assert tab.buttons() == {"cancel": False, "pause": False, "resume": False}
    assert page.text_content("#progress-text") == f"step {total_steps} / {total_steps} · 100%"
    if streams_events(srv, job.id):
        assert page.get_attribute("body", "data-feed") == "stream"
    # The log's newest row is the terminal event; the checkpoints table lists the API's.
    page.wait_for_function(
        "() => document.querySelector('#events-body tr td:last-child')?.textContent"
        " === 'The job has successfully completed'"
    )
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints
    page.wait_for_function(
        f"() => document.querySelectorAll('#ckpt-body tr').length === {len(checkpoints)}"
    )
    shot = tab.shoot("dashboard-job.png")
    assert shot.stat().st_size > 20_000
    # The log showed the newest page while events streamed in; "Load older" goes on from its
    # last row (the list endpoint's `after`): together, the API's newest 40, in its order.
    newest = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=40).data]
    row_ids = (
        "() => [...document.querySelectorAll('#events-body tr')].map((r) => r.dataset.eventId)"
    )
    assert page.evaluate(row_ids) == newest[:20]
    page.click("#events-more")
    page.wait_for_function("() => document.querySelectorAll('#events-body tr').length === 40")
    assert page.evaluate(row_ids) == newest
    hparams = str(page.text_content("#job-hparams"))
    assert "n_epochs20" in hparams and "batch_size1" in hparams, hparams

    # The job's page links to the chat with its model chosen; the answer streams in.
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model
    page.click("#job-details a[href^='/chat']")
    page.wait_for_url(re.compile(r"/chat\?model="))
    assert page.input_value("#chat-model") == done.fine_tuned_model
    page.fill("#chat-max", "48")
    page.evaluate(
        """() => {
          window.answerLengths = [];
          new MutationObserver(() => {
            const a = document.querySelector('.msg.assistant');
            if (a && a.classList.contains('streaming')) window.answerLengths.push(a.textContent.length);
          }).observe(document.querySelector('#chat-log'), {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.fill("#chat-input", "What is 3 plus 3?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant[data-done='true']")
    answer = str(page.text_content(".msg.assistant"))
    lengths = [n for n in page.evaluate("() => window.answerLengths") if n > 0]
    assert answer.strip() and len(set(lengths)) >= 2, (answer, lengths)
    chat_requests = [r for r in tab.requests if r.url.endswith("/v1/chat/completions")]
    assert len(chat_requests) == 1 and '"stream":true' in (chat_requests[0].post_data or "")
    tab.shoot("dashboard-chat.png")

    page.goto(srv.root + "/")  # same tab: the key is asked for once
    row = page.wait_for_selector(f"#jobs-body tr[data-job-id='{job.id}'][data-status='succeeded']")
    assert f"{total_steps} / {total_steps}" in str(row.text_content())
    assert page.is_hidden("#key-gate")
    tab.shoot("dashboard-jobs.png")
    tab.assert_key_kept_out()


def test_upload_start_pause_resume_cancel_from_the_pages(trainer_server: Server, tab: Tab) -> None:
    srv = trainer_server
    client = srv.client(strict=False)  # the SDK's strict status Literal lacks "paused"
    page = tab.page
    page.goto(srv.root + "/new")
    tab.enter_key()
    page.set_input_files(
        "#upload-file",
        files=[
            {"name": "form.jsonl", "mimeType": "application/jsonl", "buffer": jsonl(chat_rows(20))}
        ],
    )
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-result[data-file-id]")
    file_id = page.get_attribute("#upload-result", "data-file-id")
    uploaded = client.files.retrieve(str(file_id))
    assert (uploaded.filename, uploaded.purpose) == ("form.jsonl", "fine-tune")
    assert page.input_value("#f-training") == file_id
    page.select_option("#f-model", "ftserve-tiny")
    page.select_option("#f-method", "supervised")
    page.fill("#f-epochs", "40")  # 800 steps: long enough to pause, resume and cancel
    page.fill("#f-batch", "1")
    page.fill("#f-suffix", "from-form")
    page.fill("#f-seed", "42")
    page.click("#job-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/ftjob-"))
    assert page.is_hidden("#key-gate")  # asked once per tab, not per page
    job_id = page.url.rsplit("/", 1)[1]
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert (job.training_file, job.seed, job.user_provided_suffix) == (file_id, 42, "from-form")
    assert job.method is not None and job.method.type == "supervised"
    assert job.hyperparameters.n_epochs == 40 and job.hyperparameters.batch_size == 1

    tab.wait_status("running")
    page.wait_for_function(f"() => ({POINTS_JS})('train_loss') > 0")
    page.click("#btn-pause")
    tab.wait_status("paused")
    assert tab.buttons() == {"cancel": True, "pause": False, "resume": True}
    assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"
    # The log takes nothing after the pause event until a resume: the chart has all there is.
    paused_at = len(metrics_events(client, job_id))
    page.wait_for_function(f"() => ({POINTS_JS})('train_loss') === {paused_at}")

    page.click("#btn-resume")
    tab.wait_status("queued", "running")
    page.wait_for_function(f"() => ({POINTS_JS})('train_loss') > {paused_at}")
    tab.wait_status("running")
    assert tab.buttons() == {"cancel": True, "pause": True, "resume": False}

    page.click("#btn-cancel")  # the confirm dialog is accepted (Tab)
    tab.wait_status("cancelled")
    assert tab.buttons() == {"cancel": False, "pause": False, "resume": False}
    assert client.fine_tuning.jobs.retrieve(job_id).status == "cancelled"
    tab.assert_key_kept_out()


def test_pages_and_assets_hold_no_key_and_stay_out_of_the_api(trainer_server: Server) -> None:
    srv = trainer_server
    assets = [f"/static/{name}" for name in load_assets()]  # the stylesheet, every module
    assert "/static/app.js" in assets and "/static/app.css" in assets
    for path in ("/", "/jobs/ftjob-anything", "/new", "/chat", *assets):
        resp = httpx.get(srv.root + path)  # no key: the pages hold no data
        assert resp.status_code == 200, path
        assert API_KEY not in resp.text, path
        # Nothing is loaded from elsewhere (the SVG namespace is a name, not a request).
        text = resp.text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text and "//" + "cdn" not in text, path
        if path.startswith("/static/"):
            etag = resp.headers["etag"]
            again = httpx.get(srv.root + path, headers={"if-none-match": etag})
            assert again.status_code == 304
        else:
            assert "script-src 'self'" in resp.headers["content-security-policy"]
    page = httpx.get(srv.root + "/jobs/%3Cscript%3Ex")
    assert "<script>x" not in page.text and "&lt;script&gt;x" in page.text
    for path in ("/static/nope.js", "/jobs/x/y", "/dashboard"):
        resp = httpx.get(srv.root + path)
        assert resp.status_code == 404
        assert resp.json()["error"]["message"] == f"Invalid URL (GET {path})"
    doc = httpx.get(srv.root + "/openapi.json").json()
    pages = [
        p for p in doc["paths"] if p in ("/", "/new", "/chat") or p.startswith(("/jobs", "/static"))
    ]
    assert doc["paths"] and not pages, pages
