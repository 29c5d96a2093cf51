"""``ftserve jobs events ID --follow``: the live event stream, as a progress bar or JSON lines.

The stream is ``GET /fine_tuning/jobs/{id}/events?stream=true``: server-sent events, oldest
first, each ``id: <event id>`` and ``data: <the event JSON>``, ``: ping`` heartbeats, closed by
the server after the job's terminal event. A dropped connection is reopened with
``Last-Event-ID``, so the server resumes after the last event shown; ids already shown are
skipped anyway, so nothing is printed twice. The SDK has no method for this endpoint, so it is
read with httpx2 (the SDK's own HTTP library) using the same base URL and key.

The outcome comes from the job itself once the stream ends: its status, not an event's text.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column
from rich.text import Text

from ..events import rewards
from ..events.metrics import STEP, TOTAL_STEPS, TRAIN_LOSS
from .client import CliError, Connection, unreachable_text
from .output import console, error_text, local_time

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 2
OUTCOMES = {"succeeded": EXIT_SUCCEEDED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

# Connections in a row that bring nothing (no event, no heartbeat) before giving up; the waits
# between them grow from 0.5 s to 8 s, about a minute in all: a server restart fits.
MAX_ATTEMPTS = 10
# The server sends a heartbeat well within this; a silence this long is a dead connection.
READ_TIMEOUT = 60.0
PAUSED_POLL = 2.0

DESCRIPTIONS = {
    "validating_files": "validating files",
    "queued": "queued",
    "running": "training",
    "paused": "paused — waiting for resume",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    data: str


HEARTBEAT = None  # what parse_sse yields for a comment line


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent | None]:
    """Server-sent events from a stream's lines (the WHATWG framing); a comment, the server's
    heartbeat, yields None, so a reader knows the connection is alive."""
    data: list[str] = []
    event_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_id, "\n".join(data))
            data, event_id = [], None
            continue
        if line.startswith(":"):
            yield HEARTBEAT
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


class _Rate:
    """Steps per second from the metrics events' own timestamps, so events replayed in a burst
    on connecting count at the pace they were made, not the pace they arrived."""

    WINDOW = 60  # seconds of event time

    def __init__(self) -> None:
        self.samples: deque[tuple[int, int]] = deque()

    def add(self, created_at: int, step: int) -> None:
        self.samples.append((created_at, step))
        while self.samples and self.samples[0][0] < created_at - self.WINDOW:
            self.samples.popleft()

    def clear(self) -> None:
        self.samples.clear()

    def eta(self, step: int, total: int) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 2 or s1 <= s0:  # whole seconds: too short a span says nothing
            return None
        return (total - step) * (t1 - t0) / (s1 - s0)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _StepColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else str(int(task.total))
        return Text(f"step {int(task.completed)}/{total}")


class _FigureColumn(ProgressColumn):
    """The training loss, or for a reinforcement job the train reward and the last
    validation reward (measured every ``eval_interval`` steps only, so the last one stays)."""

    def render(self, task: Task) -> Text:
        reward = task.fields.get("reward")
        if reward is None and not task.fields.get("rewards"):
            loss = task.fields.get("loss")
            return Text("loss " + ("-" if loss is None else f"{loss:.4f}"))
        valid = task.fields.get("valid_reward")
        text = "reward " + ("-" if reward is None else f"{reward:.4f}")
        return Text(text + ("" if valid is None else f" valid {valid:.4f}"))


class _ElapsedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        since, until = task.fields.get("since"), task.fields.get("until")
        elapsed = None if since is None else (until or time.time()) - since
        return Text(f"elapsed {_clock(elapsed)}", style="dim")


class _EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"eta {_clock(task.fields.get('eta'))}", style="dim")


class BarView:
    """The person's view: messages printed above a live bar."""

    def __init__(self, job: Any) -> None:
        self.out = console()
        self.job_id = job.id
        # Unwrapped text columns: on a narrow terminal the bar gives way, and the line stays
        # one line (a wrapped live line is redrawn badly on a resize or Ctrl-C).
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=40),
            _StepColumn(table_column=Column(no_wrap=True)),
            _FigureColumn(table_column=Column(no_wrap=True)),
            _ElapsedColumn(table_column=Column(no_wrap=True)),
            _EtaColumn(table_column=Column(no_wrap=True)),
            console=self.out,
            refresh_per_second=4,
        )
        self.task = self.progress.add_task(
            DESCRIPTIONS.get(job.status, job.status),
            total=None,
            loss=None,
            # A reinforcement job says "reward" from the start, before its first step.
            rewards=getattr(job.method, "type", None) == rewards.METHOD,
            reward=None,
            valid_reward=None,
            since=job.created_at,
            until=job.finished_at,
            eta=None,
        )
        self.rate = _Rate()
        self.status = ""  # none said yet: the first status told is shown, a pause's note too

    def __enter__(self) -> BarView:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def open(self) -> None:
        """Shows the bar, once the stream is known to be there (not before an error)."""
        if not self.progress.live.is_started:
            self.progress.start()

    def event(self, raw: str, event: dict[str, Any]) -> None:
        data = event.get("data")
        if event.get("type") == "metrics" and isinstance(data, dict) and STEP.name in data:
            step = int(data[STEP.name])
            total = int(data.get(TOTAL_STEPS.name) or max(step, 1))
            self.rate.add(int(event.get("created_at") or 0), step)
            figures: dict[str, Any] = {"loss": data.get(TRAIN_LOSS.name)}
            if rewards.is_reward_data(data):
                figures = {"reward": data["train_mean_reward"]}
                if data.get("full_valid_mean_reward") is not None:
                    figures["valid_reward"] = data["full_valid_mean_reward"]
            self.progress.update(
                self.task,
                completed=step,
                total=total,
                eta=0.0 if step >= total else self.rate.eta(step, total),
                **figures,
            )
            return
        style = {"warn": "yellow", "error": "red"}.get(str(event.get("level")), "")
        line = Text(f"{local_time(event.get('created_at'))}  ", style="dim")
        line.append(str(event.get("message", "")), style=style)
        self.progress.console.print(line)

    def set_status(self, status: str, finished_at: int | None = None) -> None:
        if finished_at is not None:
            self.progress.update(self.task, until=finished_at)  # a finished job's clock stops
        if status == self.status:
            return
        self.status = status
        if status == "paused":
            self.rate.clear()  # the pause is no part of the training pace
            self.progress.console.print(
                Text(
                    f"Job paused — waiting for resume (ftserve jobs resume {self.job_id})",
                    style="yellow",
                )
            )
        task = self.progress.tasks[0]
        done = task.total is not None and task.completed >= task.total
        self.progress.update(
            self.task, description=DESCRIPTIONS.get(status, status), eta=0.0 if done else None
        )

    def note(self, text: str) -> None:
        self.progress.console.print(Text(text, style="dim"))


class JsonView:
    """For scripts: each event's JSON, as the server sent it, one per line."""

    def __init__(self, job: Any) -> None:
        self.status = job.status

    def __enter__(self) -> JsonView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def open(self) -> None:
        pass

    def event(self, raw: str, event: dict[str, Any]) -> None:
        sys.stdout.write(raw.replace("\n", "") + "\n")
        sys.stdout.flush()

    def set_status(self, status: str, finished_at: int | None = None) -> None:
        self.status = status

    def note(self, text: str) -> None:
        print(f"ftserve: {text}", file=sys.stderr, flush=True)


View = BarView | JsonView


class _Gone(Exception):
    """The connection failed or brought nothing; try again after a wait."""


class Follower:
    def __init__(
        self,
        conn: Connection,
        client: openai.OpenAI,
        job_id: str,
        view: View,
        replay_until: str | None,
    ) -> None:
        self.conn = conn
        self.client = client
        self.job_id = job_id
        self.view = view
        # The newest event when we came in: until the stream has replayed it, the events are
        # history, and the job's status now would be told in the middle of them.
        self.replay_until = replay_until
        self.last_id: str | None = None
        self.seen: set[str] = set()
        self.alive = False  # the current connection brought something

    def run(self, http: httpx2.Client) -> Any:
        """Follows the stream until the job ends; returns the final job."""
        attempts = 0
        while True:
            self.alive = False
            closed_by_server = False
            try:
                self._read(http)
                closed_by_server = True
            except (_Gone, httpx2.TransportError):
                pass  # refused, reset, timed out, 5xx: reconnect and resume after last_id
            job = self._job()
            if job is not None:
                self.view.set_status(job.status, job.finished_at)
                # The server closes the stream after the terminal event: all has been shown.
                # A stream that broke instead is reopened, to show what came after last_id.
                if closed_by_server and job.status in OUTCOMES:
                    return job
                if closed_by_server and job.status == "paused":
                    self._wait_while_paused()
                    attempts = 0
                    continue
            attempts = 0 if self.alive else attempts + 1
            if attempts >= MAX_ATTEMPTS:
                if job is None:
                    raise CliError(unreachable_text(self.conn.base_url))
                raise CliError(
                    f"the event stream of {self.job_id} keeps failing; the job is {job.status}"
                )
            if attempts:
                wait = min(8.0, 0.5 * 2 ** (attempts - 1))
                self.view.note(f"connection lost; reconnecting in {wait:.1f} s")
                time.sleep(wait)

    def _read(self, http: httpx2.Client) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        url = f"/fine_tuning/jobs/{self.job_id}/events"
        with http.stream("GET", url, params={"stream": "true"}, headers=headers) as resp:
            if resp.status_code >= 500:
                raise _Gone
            if resp.status_code != 200:
                resp.read()
                raise CliError(_http_error(resp))
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise CliError(
                    f"the server at {self.conn.base_url} does not stream events (it answered "
                    f"{ctype or 'no content type'}): it predates `jobs events --follow`"
                )
            self.view.open()
            for item in parse_sse(resp.iter_lines()):
                self.alive = True
                if item is HEARTBEAT:
                    continue
                assert item is not None
                self._event(item)

    def _event(self, item: SseEvent) -> None:
        try:
            event = json.loads(item.data)
        except ValueError:
            raise CliError(
                f"the event stream sent something that is not JSON: {item.data[:200]!r}"
            ) from None
        eid = item.id or event.get("id")
        if eid is not None:
            self.last_id = eid
            if eid in self.seen:
                return
            self.seen.add(eid)
        self.view.event(item.data, event)
        if self.replay_until is not None:
            if eid == self.replay_until:
                self.replay_until = None
                self._refresh()
        elif event.get("type") != "metrics":
            # Message events mark the transitions (paused, resumed, started…): ask the job
            # what it is now, rather than reading it from the text.
            self._refresh()

    def _refresh(self) -> None:
        if isinstance(self.view, BarView):  # JSON lines have no status to show
            job = self._job()
            if job is not None:
                self.view.set_status(job.status, job.finished_at)

    def _job(self) -> Any:
        try:
            return self.client.fine_tuning.jobs.retrieve(self.job_id)
        except openai.APIConnectionError:
            return None

    def _wait_while_paused(self) -> None:
        while True:
            time.sleep(PAUSED_POLL)
            job = self._job()
            if job is not None and job.status != "paused":
                self.view.set_status(job.status, job.finished_at)
                return


def _http_error(resp: httpx2.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {resp.status_code}: {resp.text[:300]}"
    details = [f"HTTP {resp.status_code}"]
    details += [f"{k}: {error[k]}" for k in ("param", "code") if error.get(k)]
    return f"{error.get('message') or resp.reason_phrase} ({', '.join(details)})"


def follow(conn: Connection, client: openai.OpenAI, job_id: str, *, json_lines: bool) -> int:
    job = client.fine_tuning.jobs.retrieve(job_id)  # an unknown id fails here, in plain words
    newest = client.fine_tuning.jobs.list_events(job_id, limit=1).data
    view: View = JsonView(job) if json_lines else BarView(job)
    timeout = httpx2.Timeout(10.0, read=READ_TIMEOUT)
    http = httpx2.Client(base_url=conn.base_url, headers=conn.headers(), timeout=timeout)
    with http, view:
        replay_until = newest[0].id if newest else None
        job = Follower(conn, client, job_id, view, replay_until).run(http)
    return outcome(job, json_lines=json_lines)


def outcome(job: Any, *, json_lines: bool) -> int:
    code = OUTCOMES[job.status]
    if job.status == "failed":
        print(
            f"ftserve: job {job.id} failed: {error_text(job.error) or 'no error recorded'}",
            file=sys.stderr,
            flush=True,
        )
    elif not json_lines:
        out = console()
        if job.status == "succeeded":
            out.print(Text(f"Job {job.id} succeeded: {job.fine_tuned_model}", style="green"))
        else:
            out.print(Text(f"Job {job.id} was cancelled", style="yellow"))
    return code
