"""The settings as Markdown tables, read off their declarations in :mod:`ftserve.config`.

The README's configuration table and docs/deployment.md's settings table are this output
(tests/unit/test_setting_docs.py compares them); regenerate them with
``python -m ftserve.config --markdown`` (README) and ``--markdown --who`` (deployment guide).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .config import SERVER_COMMANDS, declared_settings
from .setting import Setting


def _flag(s: Setting) -> str:
    flag, commands = s.declared.flag, s.declared.commands
    if flag is None:
        return ""
    if set(commands) == set(SERVER_COMMANDS):
        return f"`{flag}`"
    return f"`{flag}` ({', '.join(commands)})"


def _default(s: Setting) -> str:
    if s.declared.unset is not None:
        return s.declared.unset
    shown = "" if s.default is None else s.kind.show(s.default)
    return f"`{shown}`" if shown else ""


def markdown_table(who: bool = False) -> str:
    """One row per setting: variable, flag, default, what it accepts, (readers,) meaning."""
    head = ["Variable", "Flag", "Default", "Accepts", *(["Who"] if who else []), "Meaning"]
    rows = [head]
    for s in declared_settings():
        readers = [s.declared.who] if who else []
        rows.append(
            [f"`{s.env}`", _flag(s), _default(s), s.kind.accepts, *readers, s.declared.meaning]
        )
    lines = ["|" + "|".join(f" {cell} " if cell else " " for cell in row) + "|" for row in rows]
    lines.insert(1, "|" + "---|" * len(head))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ftserve.config", description="Print the settings, read off config.py."
    )
    parser.add_argument(
        "--markdown", action="store_true", required=True, help="as the README's Markdown table"
    )
    parser.add_argument(
        "--who", action="store_true", help="with the processes that read each (docs/deployment.md)"
    )
    args = parser.parse_args(argv)
    print(markdown_table(who=args.who), end="")
