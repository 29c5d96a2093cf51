"""The server commands' setting flags, read off the settings' declarations in config.py.

A flag overrides its ``FTSERVE_*`` variable; its value is checked by the same kind of value as
the variable's, and a bad one is named by the flag.
"""

from __future__ import annotations

import argparse

from ..config import Settings, declared_settings
from ..setting import Setting


def _help(s: Setting) -> str:
    meaning = s.declared.meaning.replace("`", "")
    default = s.shown_default() if s.default is not None else ""
    return f"{meaning} (default {default}, {s.env})".replace("%", "%%")


def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Every flag declared for ``command``, each with its own conversion from the command line."""
    for s in declared_settings():
        if s.declared.flag is not None and command in s.declared.commands:
            parser.add_argument(
                s.declared.flag, dest=s.attr, help=_help(s), **s.kind.argparse_options()
            )


def settings_with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with each flag given on the command line in place of its variable's value."""
    given: dict[str, object] = {}
    for s in declared_settings():
        value = getattr(args, s.attr, None)
        if s.declared.flag is not None and value is not None:
            given[s.attr] = s.kind.from_flag(value, s.declared.flag)
    return settings.with_overrides(**given)
