"""The ``method`` of a create-job request and its hyperparameters, declared as
:class:`~ftserve.wire.fields.Field` tables (the checks, the request schema and the echoed
hyperparameters' schemas come from them), with the method's own check beside its schema: which
method, and which of the two places (``method`` or the deprecated top-level
``hyperparameters``) holds its hyperparameters, is one decision.

A reinforcement method's ``grader`` is checked by the graders' own tables (the param path then
reads ``method.reinforcement.grader.graders.accuracy.operation``), its ``response_format`` by the
chat completions' checker (only ``json_schema``: the samples a grader reads as JSON).
"""

from __future__ import annotations

from typing import Any

from ..completions.structured import RESPONSE_FORMAT_SCHEMA, check_response_format
from ..errors import InvalidValue, MissingParameter
from ..graders.schemas import check_grader
from ..params import expect_object, expect_str, require
from ..wire.fields import Field, parse_body, unknown_parameter
from ..wire.shapes import closed, const, or_null, ref
from .method import METHODS, Hyperparameters, Method, MethodType

Json = dict[str, Any]

BATCH_SIZE_MAX = 256
N_EPOCHS_MAX = 50
BETA_MAX = 2
COMPUTE_MULTIPLIER_MIN = 0.00001  # excluded
COMPUTE_MULTIPLIER_MAX = 10
REASONING_EFFORTS = ("default", "low", "medium", "high")
_INNER_KEYS: dict[str, tuple[str, ...]] = {
    "supervised": ("hyperparameters",),
    "dpo": ("hyperparameters",),
    "reinforcement": ("grader", "hyperparameters", "response_format"),
}

# -- hyperparameters: "auto" or a value in range ---------------------------------------------------

SUPERVISED_HYPERPARAMETERS = (
    Field("batch_size", "integer", "Examples per batch.", 1, BATCH_SIZE_MAX, auto=True),
    Field(
        "learning_rate_multiplier",
        "number",
        "Scale on the base learning rate.",
        exclusive_minimum=0,
        auto=True,
    ),
    Field("n_epochs", "integer", "Passes over the training file.", 1, N_EPOCHS_MAX, auto=True),
)
DPO_HYPERPARAMETERS = (
    *SUPERVISED_HYPERPARAMETERS,
    Field(
        "beta",
        "number",
        "DPO: weight of the penalty between the policy and the reference model.",
        maximum=BETA_MAX,
        exclusive_minimum=0,
        auto=True,
    ),
)


def _bad_effort(param: str, value: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid value for '{param}': expected one of "
        + ", ".join(f"'{e}'" for e in REASONING_EFFORTS)
        + f", but got '{value[:64]}'.",
        param=param,
    )


REINFORCEMENT_HYPERPARAMETERS = (
    *SUPERVISED_HYPERPARAMETERS,
    Field(
        "reasoning_effort",
        "string",
        "Reinforcement: how long the model may reason before it answers (reasoning models).",
        default="default",
        enum=REASONING_EFFORTS,
        enum_error=_bad_effort,
    ),
    Field(
        "compute_multiplier",
        "number",
        "Reinforcement: scales the samples drawn per prompt.",
        maximum=COMPUTE_MULTIPLIER_MAX,
        exclusive_minimum=COMPUTE_MULTIPLIER_MIN,
        auto=True,
    ),
    Field(
        "eval_interval",
        "integer",
        "Reinforcement: training steps between validation runs.",
        minimum=1,
        auto=True,
    ),
    Field(
        "eval_samples",
        "integer",
        "Reinforcement: samples per validation prompt.",
        minimum=1,
        auto=True,
    ),
)
HYPERPARAMETER_TABLES: dict[MethodType, tuple[Field, ...]] = {
    "supervised": SUPERVISED_HYPERPARAMETERS,
    "dpo": DPO_HYPERPARAMETERS,
    "reinforcement": REINFORCEMENT_HYPERPARAMETERS,
}


def parse_hyperparameters(raw: Any, param: str, kind: MethodType) -> Hyperparameters:
    body = {} if raw is None else expect_object(raw, param)
    table = HYPERPARAMETER_TABLES[kind]
    # The tables' names are Hyperparameters' fields (tests/unit/test_method.py holds them so).
    return Hyperparameters(**parse_body(body, table, unknown=unknown_parameter, prefix=param + "."))


def _response_format(raw: Any, param: str) -> dict[str, Any]:
    checked = check_response_format(raw, param)
    if checked.kind != "json_schema":
        raise InvalidValue(
            f"Invalid value for '{param}.type': a reinforcement job's samples follow a JSON "
            f"schema; expected 'json_schema', but got '{checked.kind}'.",
            param=f"{param}.type",
        )
    # Stored as given: the job echoes it, and the trainer asks the same checker for the schema.
    return dict(raw)


# -- method (with the top-level hyperparameters) ---------------------------------------------------


def parse_method(raw: Any, top_hp: Any) -> Method:
    if raw is None:
        return Method("supervised", parse_hyperparameters(top_hp, "hyperparameters", "supervised"))
    method = expect_object(raw, "method")
    for key in method:
        if key not in ("type", *METHODS):
            raise unknown_parameter("method." + key)
    kind = expect_str(require(method, "type", "method."), "method.type")
    if kind not in METHODS:
        raise InvalidValue(
            f"Invalid value for 'method.type': expected 'supervised', 'dpo' or 'reinforcement', "
            f"but got '{kind[:64]}'.",
            param="method.type",
        )
    for other in METHODS:
        if other != kind and method.get(other) is not None:
            raise InvalidValue(
                f"'method.{other}' was given, but method.type is '{kind}'.", param=f"method.{other}"
            )
    typed = next(m for m in METHODS if m == kind)  # the name as its Literal type
    inner_raw = method.get(kind)
    inner = {} if inner_raw is None else expect_object(inner_raw, f"method.{kind}")
    for key in inner:
        if key not in _INNER_KEYS[typed]:
            raise unknown_parameter(f"method.{kind}.{key}")
    grader = response_format = None
    if typed == "reinforcement":
        param = "method.reinforcement"
        if inner.get("grader") is None:
            raise MissingParameter(f"{param}.grader")
        grader = check_grader(inner["grader"], f"{param}.grader")
        if inner.get("response_format") is not None:
            response_format = _response_format(inner["response_format"], f"{param}.response_format")
    inner_hp = inner.get("hyperparameters")
    if top_hp is not None and inner_hp is not None:
        raise InvalidValue(
            "Pass hyperparameters either in 'method' or at the top level (deprecated), not both.",
            param="hyperparameters",
        )
    source, name = (
        (inner_hp, f"method.{kind}.hyperparameters")
        if top_hp is None
        else (top_hp, "hyperparameters")
    )
    return Method(typed, parse_hyperparameters(source, name, typed), grader, response_format)


def method_schema() -> Json:
    def variant(kind: str, hp: str, **more: Json) -> Json:
        inner = or_null(
            closed(
                {**more, "hyperparameters": or_null(ref(hp))},
                required=("grader",) if "grader" in more else (),
            )
        )
        others: Json = {k: {"type": "null"} for k in METHODS if k != kind}
        return closed(
            {"type": const("type", kind).schema, kind: inner, **others}, required=("type",)
        )

    return {
        "anyOf": [
            variant("supervised", "SupervisedHyperparametersRequest"),
            variant("dpo", "DpoHyperparametersRequest"),
            variant(
                "reinforcement",
                "ReinforcementHyperparametersRequest",
                grader=ref("Grader"),
                response_format=or_null(
                    {
                        **RESPONSE_FORMAT_SCHEMA["anyOf"][1],
                        "description": "The samples' JSON schema (constrained decoding); "
                        "`{{sample.output_json}}` reads them.",
                    }
                ),
            ),
        ]
    }
