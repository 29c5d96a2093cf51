"""The graders' wire shapes, declared once: one Field table per grader type (checks with
OpenAI's wording naming the param path, e.g. ``grader.graders.accuracy.operation``, and the
OpenAPI schemas), the two endpoints' request tables and the run response."""

from __future__ import annotations

import ast
from typing import Any

from ..errors import InvalidType, InvalidValue, MissingParameter
from ..wire.fields import (
    Field,
    body_schema,
    object_schema,
    parse_body,
    supported_values,
    unknown_parameter,
)
from ..wire.shapes import BOOL, STR, STR_OR_NULL, Prop, Shape, components, or_null, ref
from . import formula, sandbox
from .metrics import METRICS, REFUSED
from .model_schemas import LABEL_MODEL_FIELDS, SCORE_MODEL_FIELDS, check_labels

Json = dict[str, Any]
TYPES = ("string_check", "text_similarity", "python", "score_model", "multi", "label_model")
OPERATIONS = ("eq", "ne", "like", "ilike")


def _metric(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(param, "a string", value)
    if value not in METRICS:
        raise supported_values(METRICS)(param, value)
    if value in REFUSED:
        raise InvalidValue(
            f"Unsupported value for '{param}': '{value}' {REFUSED[value]}.",
            param=param,
            code="unsupported_value",
        )
    return value


def _type(kind: str) -> Field:
    return Field("type", "string", f"Always `{kind}`.", required=True, enum=(kind,))


_NAME = Field("name", "string", "The grader's name.", required=True)

STRING_CHECK: tuple[Field, ...] = (
    _type("string_check"),
    _NAME,
    Field("input", "string", "The text checked; may hold templates.", required=True),
    Field(
        "reference", "string", "The text it is checked against; may hold templates.", required=True
    ),
    Field(
        "operation",
        "string",
        "`eq`, `ne`; `like`: the reference is in the input; `ilike`: the same ignoring case.",
        required=True,
        enum=OPERATIONS,
        enum_error=supported_values(OPERATIONS),
    ),
)
TEXT_SIMILARITY: tuple[Field, ...] = (
    _type("text_similarity"),
    _NAME,
    Field("input", "string", "The text graded; may hold templates.", required=True),
    Field(
        "reference", "string", "The text it is graded against; may hold templates.", required=True
    ),
    Field(
        "evaluation_metric",
        "custom",
        "`fuzzy_match` (rapidfuzz's normalised Indel ratio), `bleu` (sacrebleu), `gleu` "
        "(nltk), `rouge_1`…`rouge_5`, `rouge_l` (F-measure); `cosine` and `meteor` are a 400 "
        "(no embeddings model or WordNet corpus offline).",
        required=True,
        check=_metric,
        schema={"type": "string", "enum": [m for m in METRICS if m not in REFUSED]},
    ),
)


def _source(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(param, "a string", value)
    try:
        tree = ast.parse(value, "<grader>")
    except SyntaxError as e:
        raise InvalidValue(f"Invalid '{param}': line {e.lineno}: {e.msg}.", param=param) from None
    if not any(isinstance(n, ast.FunctionDef) and n.name == "grade" for n in tree.body):
        raise InvalidValue(
            f"Invalid '{param}': it must define `def grade(sample, item) -> float`.", param=param
        )
    return value


PYTHON: tuple[Field, ...] = (
    _type("python"),
    _NAME,
    Field(
        "source",
        "custom",
        "Python defining `grade(sample, item) -> float`; `sample` has `output_text`, "
        "`output_json` (null unless the sample is JSON) and `output_tools`. It runs in a "
        "bubblewrap sandbox: no network, no files but Python's (read-only) and a private /tmp, "
        f"no environment; per sample {sandbox.CPU_SECONDS} s of CPU and {sandbox.WALL_SECONDS} s "
        f"in all; {sandbox.MEMORY_BYTES >> 30} GiB of memory and {sandbox.PROCESSES} processes; "
        "the packages of this server's Python (numpy among them).",
        required=True,
        check=_source,
        schema={"type": "string"},
    ),
    Field(
        "image_tag",
        "string",
        "OpenAI's sandbox image: accepted, any value, with no effect; the sandbox is always "
        "this server's Python and its packages.",
        handling="ignored",
    ),
)
MULTI: tuple[Field, ...] = (
    _type("multi"),
    _NAME,
    Field(
        "graders",
        "custom",
        "The sub-graders: an object keyed by the names `calculate_output` uses, a list (named "
        "by their `name`s) or one grader. No multi grader inside a multi grader.",
        required=True,
        check=lambda value, param: _sub_graders(value, param),
        schema={
            "anyOf": [
                {"type": "object", "additionalProperties": ref("SubGrader")},
                {"type": "array", "items": ref("SubGrader")},
                ref("SubGrader"),
            ]
        },
    ),
    Field(
        "calculate_output",
        "string",
        "A formula over the sub-graders' names: `+ - * / ^`, `min max abs floor ceil exp sqrt "
        "log`, e.g. `0.8 * accuracy + 0.2 * format`.",
        required=True,
    ),
)
TABLES: dict[str, tuple[Field, ...]] = {
    "string_check": STRING_CHECK,
    "text_similarity": TEXT_SIMILARITY,
    "python": PYTHON,
    "score_model": (_type("score_model"), _NAME, *SCORE_MODEL_FIELDS),
    "label_model": (_type("label_model"), _NAME, *LABEL_MODEL_FIELDS),
    "multi": MULTI,
}


def named(graders: Any) -> dict[str, Json]:
    """A multi grader's parsed sub-graders by the name its formula uses."""
    if isinstance(graders, list):
        return {g["name"]: g for g in graders}
    if "type" in graders:
        return {graders["name"]: graders}
    return dict(graders)


def _sub_graders(value: Any, param: str) -> Any:
    if isinstance(value, list):
        if not value:
            raise InvalidValue(f"Invalid '{param}': expected at least one grader.", param=param)
        out = [check_grader(g, f"{param}[{i}]", nested=True) for i, g in enumerate(value)]
        names = [g["name"] for g in out]
        if len(set(names)) != len(names):
            raise InvalidValue(
                f"Invalid '{param}': the sub-graders' names must differ.", param=param
            )
        return out
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    if "type" in value:
        return check_grader(value, param, nested=True)
    if not value:
        raise InvalidValue(f"Invalid '{param}': expected at least one grader.", param=param)
    return {k: check_grader(g, f"{param}.{k}", nested=True) for k, g in value.items()}


def check_grader(value: Any, param: str, *, nested: bool = False) -> Json:
    """The grader at ``param``, checked against its type's table: a 400 naming the path of the
    first thing wrong with it."""
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    kind = value.get("type")
    if kind is None:
        raise MissingParameter(f"{param}.type")
    types = TYPES if nested else tuple(t for t in TYPES if t != "label_model")
    if not isinstance(kind, str):
        raise InvalidType(f"{param}.type", "a string", kind)
    if kind not in types or (nested and kind == "multi"):
        what = "a multi grader's sub-grader" if nested else "a top-level grader"
        raise InvalidValue(
            f"Invalid value for '{param}.type': '{kind[:64]}' is not {what}. Supported values "
            "are: " + ", ".join(f"'{t}'" for t in types if not (nested and t == "multi")) + ".",
            param=f"{param}.type",
            code="invalid_value",
        )
    if kind == "python" and not sandbox.available():
        raise InvalidValue(
            f"Unsupported value for '{param}.type': 'python' graders run in a bubblewrap sandbox, "
            f"which this host cannot build: {sandbox.INSTALL_HINT} on the server (and allow "
            "it namespaces).",
            param=f"{param}.type",
            code="unsupported_value",
        )
    parsed = parse_body(value, TABLES[kind], unknown=unknown_parameter, prefix=param + ".")
    if kind == "label_model":
        check_labels(parsed, param)
    if kind == "multi":
        try:
            formula.check(parsed["calculate_output"], named(parsed["graders"]))
        except formula.FormulaError as e:
            name = f"{param}.calculate_output"
            raise InvalidValue(f"Invalid '{name}': {e}", param=name) from None
    return parsed


def _grader_field(value: Any, param: str) -> Json:
    return check_grader(value, param)


GRADER = Field(
    "grader",
    "custom",
    "The grader: `string_check`, `text_similarity`, `python`, `score_model` or `multi` "
    "(`label_model` inside a `multi`).",
    required=True,
    check=_grader_field,
    schema=ref("Grader"),
)
VALIDATE_FIELDS: tuple[Field, ...] = (GRADER,)
RUN_FIELDS: tuple[Field, ...] = (
    GRADER,
    Field(
        "model_sample",
        "string",
        "The model's output graded: `{{sample.output_text}}`, and `{{sample.output_json}}` "
        "when it is JSON.",
        required=True,
    ),
    Field(
        "item",
        "custom",
        "The data row: `{{item.<key>}}`.",
        check=lambda v, p: _item(v, p),
        schema={"type": "object"},
    ),
)


def _item(value: Any, param: str) -> Any:
    if not isinstance(value, dict):
        raise InvalidType(param, "an object", value)
    return value


ERROR_FLAGS = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_server_error_type",
    "python_grader_runtime_error",
    "python_grader_runtime_error_details",
    "model_grader_server_error",
    "model_grader_server_error_details",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)
_DETAILS = frozenset(f for f in ERROR_FLAGS if f.endswith(("_details", "_type")))
RUN_ERRORS = Shape(
    "GraderRunErrors",
    [Prop(f, STR_OR_NULL if f in _DETAILS else BOOL) for f in ERROR_FLAGS],
)
_NUMBERS: Json = {"type": "object", "additionalProperties": {"type": "number"}}
RUN_METADATA = Shape(
    "GraderRunMetadata",
    [
        Prop("name", STR),
        Prop("type", STR),
        Prop("execution_time", {"type": "number", "description": "Seconds."}),
        Prop("scores", {"type": "object", "description": "Each sub-grader's score by name."}),
        Prop("token_usage", or_null({"type": "integer"})),
        Prop("sampled_model_name", STR_OR_NULL),
        Prop("errors", ref(RUN_ERRORS.name)),
    ],
)
RUN_RESPONSE = Shape(
    "RunGraderResponse",
    [
        Prop("reward", {"type": "number"}),
        Prop("metadata", ref(RUN_METADATA.name)),
        Prop("sub_rewards", _NUMBERS),
        Prop(
            "model_grader_token_usage_per_model",
            {"type": "object", "description": "Judge models' token usage (none are run here)."},
        ),
    ],
)
VALIDATE_RESPONSE = Shape("ValidateGraderResponse", [Prop("grader", ref("Grader"))])


_SUB = ("StringCheckGrader", "TextSimilarityGrader", "PythonGrader", "ScoreModelGrader")


def schemas() -> Json:
    """The graders' ``components.schemas``."""
    return {
        "StringCheckGrader": object_schema(STRING_CHECK),
        "TextSimilarityGrader": object_schema(TEXT_SIMILARITY),
        "PythonGrader": object_schema(PYTHON),
        "ScoreModelGrader": object_schema(TABLES["score_model"]),
        "LabelModelGrader": object_schema(TABLES["label_model"]),
        "MultiGrader": object_schema(MULTI),
        "SubGrader": {"anyOf": [ref(n) for n in (*_SUB, "LabelModelGrader")]},
        "Grader": {"anyOf": [ref(n) for n in (*_SUB, "MultiGrader")]},
        **components(RUN_ERRORS, RUN_METADATA, RUN_RESPONSE, VALIDATE_RESPONSE),
        "ValidateGraderRequest": body_schema(VALIDATE_FIELDS, description="A grader to check."),
        "RunGraderRequest": body_schema(RUN_FIELDS, description="A grader and a sample to grade."),
    }
