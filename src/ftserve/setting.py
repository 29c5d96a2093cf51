"""One setting's declaration, and the kinds of value a setting takes.

A :class:`Settings <ftserve.config.Settings>` field is declared with :func:`setting`, which puts
everything else about it (variable, flag, meaning, who reads it, what it accepts) in the field's
metadata, so the environment parsing, the CLI flags and the documentation tables are all read
off the dataclass and cannot drift from it. Each kind keeps the error wording the settings have
always had: a bad value names the variable (or the flag) and what it accepts.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
ENV_PREFIX = "FTSERVE_"
DEFAULT_ORGANIZATION = "personal"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and what it accepts."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    organization: str  # slug; organization_id is "org-" + slug


class Kind(ABC, Generic[T]):
    """How a raw string becomes a setting's value, and how that value is written back."""

    accepts = ""  # what the documentation tables say the setting takes

    @abstractmethod
    def parse(self, raw: str, name: str) -> T:
        """The value of ``raw``, or a :class:`ConfigError` naming ``name`` (the variable)."""

    def show(self, value: T) -> str:
        return str(value)

    def argparse_options(self) -> dict[str, Any]:
        """``add_argument`` options for this kind's flag: argparse converts, we check bounds."""
        return {}

    def from_flag(self, value: Any, flag: str) -> T:
        """A flag's value as argparse converted it; kinds with bounds check them here."""
        converted: T = value
        return converted


class Text(Kind[str]):
    def parse(self, raw: str, name: str) -> str:
        return raw


class PathValue(Kind[Path]):
    def parse(self, raw: str, name: str) -> Path:
        return Path(raw)

    def show(self, value: Path) -> str:
        # Path("./x") forgets its "./", which is what says "relative to where it starts".
        return str(value) if value.is_absolute() or str(value).startswith(".") else f"./{value}"

    def argparse_options(self) -> dict[str, Any]:
        return {"type": Path}


class Int(Kind[int]):
    def __init__(self, lo: int, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.accepts = f"{lo} to {hi}" if hi is not None else f"{lo} or more"

    def _bound(self) -> str:
        return f"between {self.lo} and {self.hi}" if self.hi is not None else f">= {self.lo}"

    def _within(self, value: int) -> bool:
        return value >= self.lo and (self.hi is None or value <= self.hi)

    def parse(self, raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: must be an integer") from None
        if not self._within(value):
            raise ConfigError(f"{name}={raw!r}: must be {self._bound()}")
        return value

    def argparse_options(self) -> dict[str, Any]:
        return {"type": int}

    def from_flag(self, value: Any, flag: str) -> int:
        if not self._within(value):
            raise ConfigError(f"{flag} {value}: must be {self._bound()}")
        return int(value)


class WholeSeconds(Kind[float]):
    """Seconds written as a whole number, held as a float (the code computes with floats)."""

    def __init__(self, lo: int, hi: int) -> None:
        self._int = Int(lo, hi)
        self.accepts = f"{lo} to {hi} s"

    def parse(self, raw: str, name: str) -> float:
        return float(self._int.parse(raw, name))

    def show(self, value: float) -> str:
        return f"{value:g}"


class Seconds(Kind[float]):
    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self.accepts = f"{lo:g} to {hi:g} s"

    def parse(self, raw: str, name: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: must be a number of seconds") from None
        if not self.lo <= value <= self.hi:  # also refuses nan
            raise ConfigError(f"{name}={raw!r}: must be between {self.lo} and {self.hi} seconds")
        return value

    def show(self, value: float) -> str:
        return f"{value:g}"


class Switch(Kind[bool]):
    accepts = "`1`, `0`"

    def parse(self, raw: str, name: str) -> bool:
        return parse_flag(raw, name)

    def show(self, value: bool) -> str:
        return "1" if value else "0"

    def argparse_options(self) -> dict[str, Any]:
        return {"type": int, "choices": (0, 1)}

    def from_flag(self, value: Any, flag: str) -> bool:
        return bool(value)


class Choice(Kind[str]):
    """One of a few words; ``listed`` is how the error names them (it may leave some unsaid)."""

    def __init__(self, *allowed: str, listed: str, lower: bool = False) -> None:
        self.allowed, self.listed, self.lower = allowed, listed, lower
        self.accepts = ", ".join(f"`{a}`" for a in allowed)

    def parse(self, raw: str, name: str) -> str:
        value = raw.lower() if self.lower else raw
        if value not in self.allowed:
            raise ConfigError(f"{name}={value!r}: must be {self.listed}")
        return value

    def from_flag(self, value: Any, flag: str) -> str:
        return self.parse(str(value), flag)


class Bytes(Kind[int]):
    accepts = "bytes: `8GiB`, `512MiB`, `8G`, `1.5GiB`"

    def parse(self, raw: str, name: str) -> int:
        return parse_bytes(raw, name)

    def show(self, value: int) -> str:
        for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
            if value % 1024**power == 0:
                return f"{value // 1024**power}{unit}"
        return str(value)


class ApiKeys(Kind[tuple[ApiKey, ...]]):
    accepts = "`key` or `org:key`, comma-separated"

    def parse(self, raw: str, name: str) -> tuple[ApiKey, ...]:
        return parse_api_keys(raw, name)

    def show(self, value: tuple[ApiKey, ...]) -> str:
        return ",".join(f"{k.organization}:{k.key}" for k in value)


class Aliases(Kind[Mapping[str, str]]):
    accepts = "`name=target,…`"

    def parse(self, raw: str, name: str) -> Mapping[str, str]:
        return parse_aliases(raw, name)

    def show(self, value: Mapping[str, str]) -> str:
        return ",".join(f"{k}={v}" for k, v in value.items())


@dataclass(frozen=True, slots=True)
class Declared:
    """Everything about a setting but its attribute name, type and default (the field's)."""

    kind: Kind[Any]
    meaning: str
    who: str  # readers: A serve, W workers, I inference, M migrate; "all" for every one
    env: str | None = None  # None: FTSERVE_ + the attribute name in capitals
    flag: str | None = None
    commands: tuple[str, ...] = ()  # the `ftserve` commands that take the flag
    unset: str | None = None  # what an unset variable means, when the default says too little
    # False: an empty variable is a value (FTSERVE_HOST= listens everywhere), not "unset".
    empty_is_unset: bool = True


@dataclass(frozen=True, slots=True)
class Setting:
    """A declared setting as the parsers and the documentation see it."""

    attr: str
    env: str
    default: Any
    declared: Declared

    @property
    def kind(self) -> Kind[Any]:
        return self.declared.kind

    def shown_default(self) -> str:
        if self.declared.unset is not None:
            return self.declared.unset
        return self.kind.show(self.default)


def setting(
    default: T,
    kind: Kind[Any],
    meaning: str,
    *,
    who: str,
    env: str | None = None,
    flag: str | None = None,
    commands: tuple[str, ...] = (),
    unset: str | None = None,
    empty_is_unset: bool = True,
    factory: Callable[[], T] | None = None,
) -> T:
    """A :class:`Settings` field carrying its declaration; ``factory`` for a mutable default."""
    declared = Declared(kind, meaning, who, env, flag, commands, unset, empty_is_unset)
    metadata = {"setting": declared}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def declared_setting(f: Field[Any]) -> Setting:
    declared: Declared = f.metadata["setting"]
    default = f.default_factory() if callable(f.default_factory) else f.default
    env = declared.env or ENV_PREFIX + f.name.upper()
    return Setting(f.name, env, default, declared)


# The parsers below are also used on their own: the CLI's client reads API keys with them.

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_bytes(raw: str, name: str) -> int:
    """``8589934592``, ``8GiB``, ``512MiB``, ``8G`` (= 8 GB), ``1.5GiB``."""
    match = _SIZE.match(raw)
    if match is None:
        raise ConfigError(f"{name}={raw!r}: must be a size in bytes such as 8GiB or 512MiB")
    number, unit = match.group(1), (match.group(2) or "").upper()
    if "I" in unit:
        scale = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        scale = _UNITS[unit.rstrip("B") if unit != "B" else "B"]
    value = int(float(number) * scale)
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: must be at least one byte")
    return value


def parse_flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: must be 1 or 0")


def parse_api_keys(raw: str, name: str = "FTSERVE_API_KEYS") -> tuple[ApiKey, ...]:
    """``KEY`` or ``ORG:KEY`` entries, comma-separated; ORG scopes what the key can see."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        org, sep, key = entry.rpartition(":")
        if not sep:
            org = DEFAULT_ORGANIZATION
        if not _SLUG.match(org):
            raise ConfigError(f"{name}: organization {org!r} must be a slug (letters, digits, - _)")
        if len(key) < 8 or any(c.isspace() for c in key):
            raise ConfigError(f"{name}: every key must be at least 8 characters without spaces")
        keys.append(ApiKey(key=key, organization=org))
    return tuple(keys)


def parse_aliases(raw: str, name: str = "FTSERVE_MODEL_ALIASES") -> dict[str, str]:
    aliases: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        alias, sep, target = entry.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ConfigError(f"{name}: entries must look like alias=model, got {entry!r}")
        aliases[alias.strip()] = target.strip()
    return aliases
