"""A job's method and hyperparameters as types, in one pure module (no torch, no SQL, no HTTP).

The store keeps them as JSON columns and the job object echoes them, both in the JSON shape the
create request gives them (``{"type": "dpo", "dpo": {"hyperparameters": {...}}}``), so
:meth:`to_json` writes exactly that shape, keys in the request tables' order (the order the
wire has always had), and :meth:`from_json` reads it back.

A hyperparameter is ``"auto"`` until the worker resolves it, then the value trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

Auto = Literal["auto"]
AUTO: Auto = "auto"
MethodType = Literal["supervised", "dpo"]
METHODS: tuple[MethodType, ...] = ("supervised", "dpo")

T = TypeVar("T")


def given(value: T | Auto) -> T | None:
    """The value chosen (by the user or the resolver); ``None`` for ``"auto"``."""
    return None if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """Fields in the wire's key order (``jobs.schemas``' tables, which a test holds to it)."""

    batch_size: int | Auto = AUTO
    learning_rate_multiplier: float | Auto = AUTO
    n_epochs: int | Auto = AUTO
    beta: float | Auto | None = None  # a DPO method's only; None: not in this set at all

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "n_epochs": self.n_epochs,
        }
        if self.beta is not None:
            out["beta"] = self.beta
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Hyperparameters:
        # An absent key is "auto", as in a request.
        return cls(
            batch_size=raw.get("batch_size", AUTO),
            learning_rate_multiplier=raw.get("learning_rate_multiplier", AUTO),
            n_epochs=raw.get("n_epochs", AUTO),
            beta=raw.get("beta"),
        )

    def common(self) -> Hyperparameters:
        """The set every method has: the job's deprecated top-level ``hyperparameters``."""
        return replace(self, beta=None)


@dataclass(frozen=True, slots=True)
class Method:
    type: MethodType
    hyperparameters: Hyperparameters

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, self.type: {"hyperparameters": self.hyperparameters.to_json()}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Method:
        # What the readers always assumed of a row: no type is supervised.
        kind: MethodType = "dpo" if raw.get("type") == "dpo" else "supervised"
        inner = raw.get(kind) or {}
        return cls(kind, Hyperparameters.from_json(inner.get("hyperparameters") or {}))
