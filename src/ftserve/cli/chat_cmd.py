"""``ftserve chat MODEL``: a conversation on the terminal, or on piped lines for scripts.

Each line read is a user message; the answer is streamed as it is generated and kept in the
conversation, so the next line is answered with all of it. ``/exit`` or end of input ends.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .client import CliError, add_connection_args


def register(sub: Any) -> None:
    chat = sub.add_parser(
        "chat",
        help="talk to a model (base or fine-tuned); reads lines from stdin",
        description="Talk to a model. Each line is a message; the answer streams back. "
        "/exit or end of input (Ctrl-D) ends. Works with piped input too.",
    )
    chat.add_argument("model", metavar="MODEL", help="e.g. ftserve-tiny or ft:…")
    chat.add_argument("--system", metavar="TEXT", help="a system message opening the chat")
    chat.add_argument("--max-tokens", type=int, help="cap on each answer's tokens")
    chat.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    add_connection_args(chat)
    chat.set_defaults(handler=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    if args.max_tokens is not None and args.max_tokens < 1:
        raise CliError("--max-tokens must be at least 1")
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    options: dict[str, Any] = {}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401 - line editing and history for input()

        print(f"Chatting with {args.model}. /exit or Ctrl-D ends.", file=sys.stderr)
    with args.conn.client() as client:
        while True:
            try:
                line = input("> " if interactive else "")
            except EOFError:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            messages.append({"role": "user", "content": text})
            parts: list[str] = []
            with client.chat.completions.create(
                model=args.model,
                messages=messages,
                stream=True,
                **options,
            ) as stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta.content:
                            parts.append(choice.delta.content)
                            sys.stdout.write(choice.delta.content)
                            sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
            messages.append({"role": "assistant", "content": "".join(parts)})
    if interactive:
        print(file=sys.stderr)
    return 0
