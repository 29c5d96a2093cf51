"""A job's method and hyperparameters as types, in one pure module (no torch, no SQL, no HTTP).

The store keeps them as JSON columns and the job object echoes them, both in the JSON shape the
create request gives them (``{"type": "dpo", "dpo": {"hyperparameters": {...}}}``), so
:meth:`to_json` writes exactly that shape, keys in the request tables' order (the order the
wire has always had), and :meth:`from_json` reads it back.

A hyperparameter is ``"auto"`` until the worker resolves it, then the value trained with.

A reinforcement method also carries its ``grader`` (as the graders' checker understood it) and
an optional ``response_format``, echoed beside its hyperparameters exactly as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Auto = Literal["auto"]
AUTO: Auto = "auto"
MethodType = Literal["supervised", "dpo", "reinforcement"]
METHODS: tuple[MethodType, ...] = ("supervised", "dpo", "reinforcement")
ReasoningEffort = Literal["default", "low", "medium", "high"]

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
    # The rest belong to one method each; None: not in this method's set at all.
    beta: float | Auto | None = None  # dpo
    reasoning_effort: ReasoningEffort | None = None  # reinforcement, from here on
    compute_multiplier: float | Auto | None = None
    eval_interval: int | Auto | None = None
    eval_samples: int | Auto | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "n_epochs": self.n_epochs,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Hyperparameters:
        # An absent key is "auto", as in a request.
        return cls(
            batch_size=raw.get("batch_size", AUTO),
            learning_rate_multiplier=raw.get("learning_rate_multiplier", AUTO),
            n_epochs=raw.get("n_epochs", AUTO),
            **{name: raw.get(name) for name in _OPTIONAL},
        )

    def common(self) -> Hyperparameters:
        """The set every method has: the job's deprecated top-level ``hyperparameters``."""
        return Hyperparameters(self.batch_size, self.learning_rate_multiplier, self.n_epochs)


_OPTIONAL = ("beta", "reasoning_effort", "compute_multiplier", "eval_interval", "eval_samples")


@dataclass(frozen=True, slots=True)
class Method:
    type: MethodType
    hyperparameters: Hyperparameters
    # reinforcement only: the grader as checked (its parsed form) and the samples' format
    grader: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        inner: dict[str, Any] = {}
        if self.grader is not None:
            inner["grader"] = self.grader
        inner["hyperparameters"] = self.hyperparameters.to_json()
        if self.response_format is not None:
            inner["response_format"] = self.response_format
        return {"type": self.type, self.type: inner}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Method:
        # What the readers always assumed of a row: no type is supervised.
        kind = raw.get("type")
        typed: MethodType = kind if kind in ("dpo", "reinforcement") else "supervised"
        inner = raw.get(typed) or {}
        return cls(
            typed,
            Hyperparameters.from_json(inner.get("hyperparameters") or {}),
            grader=inner.get("grader"),
            response_format=inner.get("response_format"),
        )
