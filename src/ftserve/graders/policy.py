"""What this server lets a grader use, checked where a grader is accepted (``/graders/validate``,
``/graders/run``, a reinforcement job's creation) rather than when it first grades: python
graders only where the operator has not turned them off (``FTSERVE_PYTHON_GRADERS``), and model
graders only with a judge this server serves to the caller's organization.

The graders' tables cannot say either: both depend on the server and the caller, not the JSON."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import InvalidValue, NotFound

Json = dict[str, Any]
# The judge's chat model as the caller may use it: True if it can chat, False if it is served
# but only on /completions; raises NotFound for a model the caller cannot use.
Judge = Callable[[str], bool]
_JUDGED = ("score_model", "label_model")


def _subs(raw: Json, param: str) -> Iterator[tuple[Any, str]]:
    """A multi grader's sub-graders with their param paths, in any of its three forms."""
    graders = raw.get("graders")
    if isinstance(graders, list):
        yield from ((g, f"{param}.graders[{i}]") for i, g in enumerate(graders))
    elif isinstance(graders, dict) and "type" in graders:
        yield graders, f"{param}.graders"
    elif isinstance(graders, dict):
        yield from ((g, f"{param}.graders.{k}") for k, g in graders.items())


def _each(raw: Any, param: str) -> Iterator[tuple[Json, str]]:
    """The grader and, for a multi grader, its sub-graders (the objects only: the rest is the
    tables' to refuse)."""
    if not isinstance(raw, dict):
        return
    yield raw, param
    if raw.get("type") == "multi":
        yield from ((g, p) for g, p in _subs(raw, param) if isinstance(g, dict))


def refuse_python(raw: Any, param: str) -> None:
    """A 400 for a python grader, on a server where they are turned off. Run on the raw request,
    before its grader is checked, so that the reason given is the operator's setting, not
    whether this host could have sandboxed it."""
    for grader, path in _each(raw, param):
        if grader.get("type") == "python":
            raise InvalidValue(
                f"Unsupported value for '{path}.type': python graders are turned off on this "
                "server (FTSERVE_PYTHON_GRADERS=0).",
                param=f"{path}.type",
                code="unsupported_value",
            )


def check_judges(grader: Json, param: str, judge: Judge) -> None:
    """A 400 naming ``<grader>.model`` for a judge the caller cannot chat with here."""
    for sub, path in _each(grader, param):
        if sub.get("type") not in _JUDGED:
            continue
        name = sub["model"]
        where = f"{path}.model"
        try:
            chat = judge(name)
        except NotFound:
            raise InvalidValue(
                f"Invalid '{where}': the model '{name[:256]}' does not exist or you do not have "
                "access to it. A judge is a model this server serves (GET /v1/models): a base "
                "model, an alias, or one of your fine-tuned or checkpoint models.",
                param=where,
                code="model_not_found",
            ) from None
        if not chat:
            raise InvalidValue(
                f"Invalid '{where}': '{name[:256]}' was fine-tuned on prompt/completion rows "
                "and is served on /v1/completions only; a judge must be a chat model.",
                param=where,
                code="invalid_value",
            )
