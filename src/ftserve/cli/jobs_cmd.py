"""``ftserve jobs create|list|get|cancel|pause|resume|events|checkpoints``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import CliError, add_connection_args, add_json_arg, print_json, raw
from .files_cmd import upload_file

if TYPE_CHECKING:
    import openai
    from rich.text import Text

# follow.py's outcomes (follow.OUTCOMES), worded for --help.
EXIT_CODES_HELP = """\
exit status with --follow (the job's outcome):
  0    the job succeeded
  1    the job failed (its error is printed), or the command itself failed
  2    the job was cancelled
  130  interrupted (Ctrl-C); the job goes on
without --follow: 0 once the events are printed, 1 on an error"""


def register(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="create, watch and control fine-tuning jobs")
    verbs = jobs.add_subparsers(
        dest="verb",
        required=True,
        metavar="{create,list,get,cancel,pause,resume,events,checkpoints}",
    )

    create = verbs.add_parser(
        "create",
        help="create a fine-tuning job",
        description="Create a fine-tuning job. --training-file and --validation-file take a "
        "file id, or a local file, which is uploaded first (purpose fine-tune).",
    )
    create.add_argument("--model", required=True, help="base model, e.g. ftserve-tiny")
    create.add_argument("--training-file", required=True, help="file id or local JSONL path")
    create.add_argument("--validation-file", help="file id or local JSONL path")
    create.add_argument("--epochs", type=int, help="n_epochs (default auto)")
    create.add_argument("--batch-size", type=int, help="batch_size (default auto)")
    create.add_argument(
        "--learning-rate-multiplier", type=float, help="learning_rate_multiplier (default auto)"
    )
    create.add_argument("--beta", type=float, help="DPO beta (with --method dpo; default auto)")
    create.add_argument("--suffix", help="up to 64 characters, part of the fine-tuned model name")
    create.add_argument("--seed", type=int, help="seed, for a reproducible run")
    create.add_argument(
        "--method", choices=("supervised", "dpo"), default="supervised", help="default supervised"
    )
    add_json_arg(create)
    add_connection_args(create)
    create.set_defaults(handler=cmd_create)

    listing = verbs.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=cmd_list)

    for verb, text, handler in (
        ("get", "show one job", cmd_get),
        ("cancel", "cancel a job", cmd_control),
        ("pause", "pause a running or queued job (it keeps a checkpoint)", cmd_control),
        ("resume", "resume a paused job from its checkpoint", cmd_control),
    ):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("job_id", metavar="ID")
        add_json_arg(p)
        add_connection_args(p)
        p.set_defaults(handler=handler)

    events = verbs.add_parser(
        "events",
        help="show a job's events, oldest first (--follow: live, with a progress bar)",
        description="Show a job's events, oldest first. With --follow, wait for new ones\n"
        "and show a progress bar until the job ends.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    events.add_argument("job_id", metavar="ID")
    events.add_argument(
        "--follow", "-f", action="store_true", help="follow the live stream until the job ends"
    )
    events.add_argument(
        "--json", action="store_true", help="print the events' JSON (with --follow: one per line)"
    )
    add_connection_args(events)
    events.set_defaults(handler=cmd_events)

    ckpts = verbs.add_parser("checkpoints", help="list a job's checkpoints, newest first")
    ckpts.add_argument("job_id", metavar="ID")
    add_json_arg(ckpts)
    add_connection_args(ckpts)
    ckpts.set_defaults(handler=cmd_checkpoints)


def _file_id(client: openai.OpenAI, value: str, param: str) -> str:
    """A file id as given, or the id of a local file uploaded now (and said so on stderr, so
    ``--json`` output stays the job alone)."""
    path = Path(value)
    if not path.is_file():
        if value.startswith("file-") or ("/" not in value and not value.endswith(".jsonl")):
            return value
        raise CliError(f"{param} {value}: no such local file (and not a file id)")
    f = upload_file(client, path, "fine-tune")
    print(f"Uploaded {value} as {f.id}", file=sys.stderr, flush=True)
    return str(f.id)


def method_body(args: argparse.Namespace) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    if args.epochs is not None:
        hp["n_epochs"] = args.epochs
    if args.batch_size is not None:
        hp["batch_size"] = args.batch_size
    if args.learning_rate_multiplier is not None:
        hp["learning_rate_multiplier"] = args.learning_rate_multiplier
    if args.beta is not None:
        if args.method != "dpo":
            raise CliError("--beta is a DPO hyperparameter: add --method dpo")
        hp["beta"] = args.beta
    return {"type": args.method, args.method: {"hyperparameters": hp}}


def cmd_create(args: argparse.Namespace) -> int:
    from .output import console, show_job

    with args.conn.client() as client:
        method = method_body(args)
        training = _file_id(client, args.training_file, "--training-file")
        kwargs: dict[str, Any] = {"model": args.model, "training_file": training, "method": method}
        if args.validation_file:
            kwargs["validation_file"] = _file_id(client, args.validation_file, "--validation-file")
        if args.suffix is not None:
            kwargs["suffix"] = args.suffix
        if args.seed is not None:
            kwargs["seed"] = args.seed
        job = client.fine_tuning.jobs.create(**kwargs)
    if args.json:
        print_json(raw(job))
        return 0
    show_job(job)
    console().print(f"\nFollow it with: ftserve jobs events {job.id} --follow", style="dim")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .output import local_time, show_table, status_text

    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    jobs: list[Any] = []
    with args.conn.client() as client:
        for job in client.fine_tuning.jobs.list(limit=min(args.limit, 100)):
            jobs.append(job)
            if len(jobs) >= args.limit:
                break
    if args.json:
        print_json([raw(j) for j in jobs])
        return 0
    show_table(
        ["ID", "STATUS", "MODEL", "FINE-TUNED MODEL", "CREATED"],
        (
            [
                j.id,
                status_text(j.status),
                j.model,
                j.fine_tuned_model or "-",
                local_time(j.created_at),
            ]
            for j in jobs
        ),
        empty="No fine-tuning jobs.",
    )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from .output import show_job

    with args.conn.client() as client:
        job = client.fine_tuning.jobs.retrieve(args.job_id)
    if args.json:
        print_json(raw(job))
    else:
        show_job(job)
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from rich.text import Text

    from .output import console, status_text

    with args.conn.client() as client:
        action = getattr(client.fine_tuning.jobs, args.verb)
        job = action(args.job_id)
    if args.json:
        print_json(raw(job))
    else:
        line = Text(f"{job.id}: ")
        line.append_text(status_text(job.status))
        console().print(line)
    return 0


def event_line(event: Any) -> Text:
    from rich.text import Text

    from .output import local_time

    style = {"warn": "yellow", "error": "red"}.get(event.level, "")
    line = Text(f"{local_time(event.created_at)}  ", style="dim")
    line.append(f"{event.level:<5}  ", style=style or "dim")
    line.append(event.message, style=style)
    return line


def cmd_events(args: argparse.Namespace) -> int:
    from .output import console

    with args.conn.client() as client:
        if args.follow:
            from .follow import follow

            return follow(args.conn, client, args.job_id, json_lines=args.json)
        # The list is newest first; people read a log oldest first.
        events = list(client.fine_tuning.jobs.list_events(args.job_id, limit=1000))[::-1]
    if args.json:
        print_json([raw(e) for e in events])
        return 0
    out = console()
    for e in events:
        out.print(event_line(e))
    return 0


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _checkpoint_figures(metrics: Any, rewards: bool) -> list[str]:
    """A reinforcement job's checkpoints hold rewards (OpenAI's extra keys, beside the SDK's
    loss fields, which are null there); the others, losses."""
    if rewards:
        extra = metrics.model_extra or {}
        return [_figure(extra.get("train_reward_mean")), _figure(extra.get("valid_reward_mean"))]
    return [_figure(metrics.train_loss), _figure(metrics.valid_loss)]


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from .output import local_time, show_table

    with args.conn.client() as client:
        ckpts = list(client.fine_tuning.jobs.checkpoints.list(args.job_id, limit=100))
    if args.json:
        print_json([raw(c) for c in ckpts])
        return 0
    rewards = any("train_reward_mean" in (c.metrics.model_extra or {}) for c in ckpts)
    figures = ["TRAIN REWARD", "VALID REWARD"] if rewards else ["TRAIN LOSS", "VALID LOSS"]
    show_table(
        ["ID", "STEP", "MODEL", *figures, "CREATED"],
        (
            [
                c.id,
                str(c.step_number),
                c.fine_tuned_model_checkpoint,
                *_checkpoint_figures(c.metrics, rewards),
                local_time(c.created_at),
            ]
            for c in ckpts
        ),
        empty="No checkpoints yet.",
    )
    return 0
