"""``ftserve files upload|list``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import CliError, add_connection_args, add_json_arg, print_json, raw

if TYPE_CHECKING:
    import openai


def register(sub: Any) -> None:
    files = sub.add_parser("files", help="upload and list files (training data)")
    verbs = files.add_subparsers(dest="verb", required=True, metavar="{upload,list}")
    upload = verbs.add_parser("upload", help="upload a file (JSONL training data)")
    upload.add_argument("file", type=Path, help="the local file to upload")
    upload.add_argument("--purpose", default="fine-tune", help="file purpose (default fine-tune)")
    add_json_arg(upload)
    add_connection_args(upload)
    upload.set_defaults(handler=cmd_upload)
    listing = verbs.add_parser("list", help="list uploaded files, newest first")
    listing.add_argument("--purpose", help="only files of this purpose")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=cmd_list)


def upload_file(client: openai.OpenAI, path: Path, purpose: str) -> Any:
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    with path.open("rb") as fh:
        return client.files.create(file=(path.name, fh), purpose=purpose)  # type: ignore[arg-type]


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def cmd_upload(args: argparse.Namespace) -> int:
    from .output import console

    with args.conn.client() as client:
        f = upload_file(client, args.file, args.purpose)
    if args.json:
        print_json(raw(f))
    else:
        console().print(f"Uploaded {f.filename} as {f.id} ({human_bytes(f.bytes)}, {f.purpose})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .output import local_time, show_table

    with args.conn.client() as client:
        kwargs: dict[str, Any] = {"purpose": args.purpose} if args.purpose else {}
        files = list(client.files.list(**kwargs))
    if args.json:
        print_json([raw(f) for f in files])
        return 0
    show_table(
        ["ID", "FILENAME", "PURPOSE", "SIZE", "STATUS", "CREATED"],
        (
            [
                f.id,
                f.filename,
                f.purpose,
                human_bytes(f.bytes),
                f.status or "-",
                local_time(f.created_at),
            ]
            for f in files
        ),
        empty="No files.",
    )
    return 0
