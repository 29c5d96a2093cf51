"""``ftserve models list``."""

from __future__ import annotations

import argparse
from typing import Any

from .client import add_connection_args, add_json_arg, print_json, raw


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="list the models to fine-tune and to call")
    verbs = models.add_subparsers(dest="verb", required=True, metavar="{list}")
    listing = verbs.add_parser("list", help="base models, then your fine-tuned ones")
    add_json_arg(listing)
    add_connection_args(listing)
    listing.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from .output import local_time, show_table

    with args.conn.client() as client:
        models = list(client.models.list())
    if args.json:
        print_json([raw(m) for m in models])
        return 0
    show_table(
        ["ID", "OWNED BY", "CREATED"],
        ([m.id, m.owned_by or "-", local_time(m.created)] for m in models),
        empty="No models.",
    )
    return 0
