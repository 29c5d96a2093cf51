"""Human output of the user commands: tables, one job's summary, times in local time."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by grep and awk: rich's 80 columns would fold ids across lines.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def emit(renderable: RenderableType) -> None:
    """Prints to stdout; piped, without the padding rich leaves at the ends of lines."""
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()


def local_time(ts: int | float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def show_table(
    columns: Sequence[str], rows: Iterable[Sequence[str | Text]], *, empty: str, keep: int = 1
) -> None:
    """A table whose first ``keep`` columns (ids) are never wrapped, so they stay copyable."""
    rows = list(rows)
    if not rows:
        emit(Text(empty, style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, no_wrap=i < keep)
    for row in rows:
        table.add_row(*row)
    emit(table)


def _value(v: Any) -> str:
    return "-" if v is None or v == "" else str(v)


def hyperparameters_text(job: Any) -> str:
    method = getattr(job, "method", None)
    hp: Any = None
    if method is not None and method.type:
        inner = getattr(method, method.type, None)
        hp = getattr(inner, "hyperparameters", None)
    if hp is None:
        hp = job.hyperparameters
    if hp is None:
        return "-"
    values = hp.to_dict(mode="json", warnings=False)
    return " ".join(f"{k}={v}" for k, v in values.items()) or "-"


def error_text(error: Any) -> str | None:
    """A job's error, or None for a job without one (null, or ``{}`` as OpenAI sends)."""
    if error is None or not getattr(error, "message", None):
        return None
    extra = [f"{k}: {v}" for k, v in (("code", error.code), ("param", error.param)) if v]
    return str(error.message) + (f" ({', '.join(extra)})" if extra else "")


STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "paused": "yellow",
    "running": "cyan",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def show_job(job: Any) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("id", job.id)
    grid.add_row("status", status_text(job.status))
    grid.add_row("model", _value(job.model))
    grid.add_row("fine_tuned_model", _value(job.fine_tuned_model))
    method = getattr(job, "method", None)
    grid.add_row("method", _value(method.type if method is not None else None))
    grid.add_row("training_file", _value(job.training_file))
    grid.add_row("validation_file", _value(job.validation_file))
    grid.add_row("hyperparameters", hyperparameters_text(job))
    grid.add_row("seed", _value(job.seed))
    grid.add_row("trained_tokens", _value(job.trained_tokens))
    grid.add_row("created", local_time(job.created_at))
    grid.add_row("finished", local_time(job.finished_at))
    if job.result_files:
        grid.add_row("result_files", ", ".join(job.result_files))
    err = error_text(job.error)
    if err:
        grid.add_row("error", Text(err, style="red"))
    emit(grid)
