"""The create-job request, declared once as :class:`~ftserve.wire.fields.Field` tables: the
checks (OpenAI's wording and codes), the request schema in the OpenAPI document and the
hyperparameter and integration schemas of the job object all come from these tables.

Bounds follow the published spec (each one constant below): suffix 1..64 chars, n_epochs 1..50,
batch_size 1..256, learning_rate_multiplier > 0, beta in (0, 2], compute_multiplier in
(0.00001, 10], eval_interval and eval_samples ≥ 1, seed 0..2147483647, metadata ≤ 16 pairs (keys
≤ 64 chars, values ≤ 512), integrations ≤ 5.

A reinforcement method's ``grader`` is checked by the graders' own tables (the param path then
reads ``method.reinforcement.grader.graders.accuracy.operation``), its ``response_format`` by the
chat completions' checker (only ``json_schema``: the samples a grader reads as JSON).

ftserve's own extension is one namespaced object, ``"ftserve": {"adapter": "lora" | "full",
"lora_rank": int, ...}`` (:data:`EXTENSION_FIELDS`), so OpenAI's fields keep exactly their
meaning. Azure's ``trainingType`` is
accepted and recorded (it picks a billing tier on Azure; nothing to pick here).

``method`` and the deprecated top-level ``hyperparameters`` are one decision (which method, and
which of the two places holds its hyperparameters), so they are checked together, by hand, with
their schema beside the check; the hyperparameters themselves are tables.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..completions.structured import RESPONSE_FORMAT_SCHEMA, check_response_format
from ..errors import InvalidValue, MissingParameter
from ..graders.policy import refuse_python
from ..graders.schemas import check_grader
from ..params import expect_object, expect_str, require
from ..wire import metadata
from ..wire.fields import (
    Field,
    body_schema,
    check_integer,
    object_schema,
    parse_body,
    unknown_parameter,
)
from ..wire.queries import Paging
from ..wire.shapes import closed, const, or_null, ref
from .method import METHODS, Hyperparameters, Method, MethodType

Json = dict[str, Any]

MAX_SEED = 2_147_483_647
MODEL_MAX_LENGTH = 4096
FILE_ID_MAX_LENGTH = 256
SUFFIX_MAX_LENGTH = 64
TRAINING_TYPE_MAX_LENGTH = 64
BATCH_SIZE_MAX = 256
N_EPOCHS_MAX = 50
BETA_MAX = 2
COMPUTE_MULTIPLIER_MIN = 0.00001  # excluded
COMPUTE_MULTIPLIER_MAX = 10
REASONING_EFFORTS = ("default", "low", "medium", "high")
MAX_INTEGRATIONS = 5
WANDB_TAG_MAX_LENGTH = 64
LORA_RANK_MAX = 1024
DEVICES_MAX = 64
NODES_MAX = 16
DEFAULT_LORA_RANK = 8
ADAPTERS = ("lora", "full")
QUANTIZATIONS = ("nf4",)
# Memory: the longest sequence kept (tokens) and the micro-batch's token budget.
MAX_SEQ_LEN_MIN = 16
MAX_SEQ_LEN_MAX = 131_072
DEFAULT_MAX_SEQ_LEN = 2048
MICRO_BATCH_TOKENS_MIN = 16
MICRO_BATCH_TOKENS_MAX = 1_048_576
_INNER_KEYS: dict[str, tuple[str, ...]] = {
    "supervised": ("hyperparameters",),
    "dpo": ("hyperparameters",),
    "reinforcement": ("grader", "hyperparameters", "response_format"),
}
# What a reinforcement job may not ask of ftserve's options: its trainer runs on one device.
_ONE_DEVICE = {"devices": 1, "nodes": 1}
PAGING = Paging("job", "Jobs", default_limit=20)

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


def _parse_method(raw: Any, top_hp: Any) -> Method:
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


def _method_schema() -> Json:
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


# -- metadata --------------------------------------------------------------------------------------


def _check_metadata(raw: Any, param: str) -> dict[str, str]:
    meta = expect_object(raw, param)
    if len(meta) > metadata.MAX_PAIRS:
        raise InvalidValue(
            f"Invalid 'metadata': too many keys. Expected at most {metadata.MAX_PAIRS} keys, but "
            f"got {len(meta)}.",
            param=param,
            code="object_above_max_properties",
        )
    for key, value in meta.items():
        expect_str(key, param, max_length=metadata.KEY_MAX_LENGTH)
        expect_str(value, f"{param}.{key}", max_length=metadata.VALUE_MAX_LENGTH)
    return dict(meta)


# -- integrations ----------------------------------------------------------------------------------


def _only_wandb(param: str, value: str) -> InvalidValue:
    return InvalidValue(f"Invalid '{param}': only 'wandb' is supported.", param=param)


def _too_many_integrations(param: str, count: int) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': at most {MAX_INTEGRATIONS} integrations are allowed.",
        param=param,
        code="array_above_max_length",
    )


WANDB_FIELDS = (
    Field("project", "string", required=True, min_length=1),
    Field("name", "string"),
    Field("entity", "string"),
    Field(
        "tags",
        "array",
        items=Field("tag", "string", required=True, maximum=WANDB_TAG_MAX_LENGTH),
    ),
)
INTEGRATION_FIELDS = (
    Field("type", "string", required=True, enum=("wandb",), enum_error=_only_wandb),
    Field("wandb", "object", required=True, fields=WANDB_FIELDS),
)

# -- ftserve's extension ---------------------------------------------------------------------------


def _bad_adapter(param: str, value: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': expected 'lora' or 'full', got '{value[:32]}'.", param=param
    )


def _bad_quantization(param: str, value: str) -> InvalidValue:
    return InvalidValue(
        f"Invalid '{param}': expected 'nf4' or null, got '{value[:32]}'.", param=param
    )


def _check_devices(value: Any, param: str) -> int | str:
    """An integer 1..64, or "auto" (every GPU of the worker that takes it; 1 on CPU)."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise InvalidValue(
            f"Invalid value for '{param}': expected 'auto' or an integer, but got '{value[:64]}'.",
            param=param,
        )
    return check_integer(value, param, 1, DEVICES_MAX)


EXTENSION_FIELDS = (
    Field("adapter", "string", default="lora", enum=ADAPTERS, enum_error=_bad_adapter),
    Field("lora_rank", "integer", minimum=1, maximum=LORA_RANK_MAX, default=DEFAULT_LORA_RANK),
    # -- memory (training/memory.py) --
    Field(
        "gradient_checkpointing",
        "boolean",
        "Recompute activations in the backward pass instead of keeping them: less memory, about "
        "a third more compute, the same losses. `auto` turns it on on a GPU when the planned "
        "micro-batch would not fit in its free memory (never on a CPU); the job echoes what "
        "was chosen once training starts.",
        auto=True,
    ),
    Field(
        "quantization",
        "string",
        "`nf4`: load the frozen base model in 4 bits (bitsandbytes) and train a LoRA adapter "
        "over it (QLoRA). Only with adapter `lora`.",
        enum=QUANTIZATIONS,
        enum_error=_bad_quantization,
    ),
    Field(
        "max_seq_len",
        "integer",
        "Longest sequence kept, in tokens; longer examples lose their end.",
        MAX_SEQ_LEN_MIN,
        MAX_SEQ_LEN_MAX,
        default=DEFAULT_MAX_SEQ_LEN,
    ),
    Field(
        "max_tokens_per_micro_batch",
        "integer",
        "Tokens fed to the model at once (a step's examples are split into micro-batches of at "
        "most this many, at least one example each; the step's result does not change). `auto` "
        "plans it from the GPU's free memory (16384 on a CPU); the job echoes the plan once "
        "training starts. An out-of-memory error halves it and retries the step.",
        MICRO_BATCH_TOKENS_MIN,
        MICRO_BATCH_TOKENS_MAX,
        auto=True,
    ),
    Field(
        "packing",
        "boolean",
        "Feed each micro-batch as one padding-free sequence, attention kept inside each example "
        "(same examples per step, same loss); models that cannot be packed exactly are padded.",
        default=True,
    ),
    Field(
        "devices",
        "custom",
        "Processes the job trains on, one per device: GPUs on a GPU worker, CPU processes of "
        "`FTSERVE_TORCH_THREADS` threads each on a CPU worker (each counts against "
        "`FTSERVE_CONCURRENCY`). `auto`: every GPU of the worker that takes it (1 on CPU). The "
        "losses are those of one device with the same batch.",
        default=1,
        check=_check_devices,
        schema={
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": DEVICES_MAX},
                {"type": "string", "const": "auto"},
            ]
        },
    ),
    Field(
        "fsdp",
        "boolean",
        "Shard a full fine-tune over its devices with FSDP (each device holds a share of the "
        "weights, gradients and Adam state) instead of copying the model to each. `auto` shards "
        "on GPUs when the model with its gradients and Adam state would not fit one GPU's free "
        "memory (never on CPU workers). `true` needs adapter `full` and `devices` above 1. The "
        "losses are the same either way; the job echoes what was chosen once training starts.",
        auto=True,
    ),
    Field(
        "nodes",
        "integer",
        "Workers the job trains on, each running `devices` processes (world size: nodes times "
        "devices), normally on different machines: the worker that takes the job waits up to "
        "`FTSERVE_GANG_WAIT_SECONDS` for the others to join (it says so in the job's log). The "
        "losses are those of one device with the same batch.",
        1,
        NODES_MAX,
        default=1,
    ),
)
TRAINING_TYPE = Field(
    "trainingType",
    "string",
    "Azure's training tier; recorded, has no effect here.",
    maximum=TRAINING_TYPE_MAX_LENGTH,
)

# -- the request -----------------------------------------------------------------------------------


def _file_field(name: str, doc: str, *, required: bool = False) -> Field:
    return Field(name, "string", doc, required=required, min_length=1, maximum=FILE_ID_MAX_LENGTH)


def _method_from_body(body: Mapping[str, Any]) -> Method:
    return _parse_method(body.get("method"), body.get("hyperparameters"))


def _checked_with_method(body: Mapping[str, Any]) -> Any:
    return body.get("hyperparameters")  # already checked in ``method``'s turn


# In the order the checks run: the first invalid field is the one a 400 names.
CREATE_JOB_FIELDS = (
    Field(
        "model",
        "string",
        "A base model from `GET /models`, an alias, a local Hugging Face model directory or a "
        "model id in the local Hugging Face cache.",
        required=True,
        min_length=1,
        maximum=MODEL_MAX_LENGTH,
        examples=("ftserve-tiny",),
    ),
    _file_field("training_file", "A file uploaded with purpose fine-tune.", required=True),
    _file_field("validation_file", "A file uploaded with purpose fine-tune, for evaluation."),
    Field(
        "suffix",
        "string",
        "Part of the fine-tuned model's name: no `:` and no whitespace.",
        min_length=1,
        maximum=SUFFIX_MAX_LENGTH,
        pattern=r"[^:\s]+",
        pattern_error="Invalid 'suffix': it becomes part of the model name, so it may not "
        "contain ':' or whitespace.",
    ),
    Field("seed", "integer", "Same seed, data and model: the same loss curve.", 0, MAX_SEED),
    Field(
        "method",
        "custom",
        "The method: `supervised` (chat or prompt/completion examples), `dpo` (preference "
        "examples) or `reinforcement` (prompts ending with a user message, graded by `grader`; "
        "needs a `validation_file`, and runs on one device: `ftserve.devices` and "
        "`ftserve.nodes` 1, `ftserve.fsdp` not true). Hyperparameters go either here or in "
        "the deprecated top-level `hyperparameters`, not both.",
        schema=_method_schema(),
        from_body=_method_from_body,
    ),
    Field(
        "hyperparameters",
        "custom",
        "Deprecated: use `method`. `beta` only with `method.type` `dpo`; the reinforcement "
        "ones only with `reinforcement`.",
        # One object (every method's fields, each method taking its own): a union of the
        # methods' objects would state the common fields' bounds once per method.
        schema=object_schema((*DPO_HYPERPARAMETERS, *REINFORCEMENT_HYPERPARAMETERS[3:])),
        from_body=_checked_with_method,
    ),
    Field("metadata", "custom", "", check=_check_metadata, schema=ref("Metadata")),
    Field(
        "integrations",
        "array",
        items=Field(
            "integration",
            "object",
            required=True,
            fields=INTEGRATION_FIELDS,
            schema=ref("WandbIntegrationRequest"),
        ),
        max_items=MAX_INTEGRATIONS,
        max_items_error=_too_many_integrations,
    ),
    Field(
        "ftserve",
        "object",
        "ftserve's own options (each property says what it does and its default); echoed, "
        "resolved, in the job object's `ftserve`.",
        fields=EXTENSION_FIELDS,
    ),
    TRAINING_TYPE,
)


@dataclass
class CreateJobRequest:
    model: str
    training_file: str
    validation_file: str | None
    method: Method
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[dict[str, Any]] | None
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> Hyperparameters:
        """The top-level (deprecated) view: the three common fields of the method's."""
        return self.method.hyperparameters.common()


def extension_defaults() -> dict[str, Any]:
    """The ``ftserve`` object of a request that leaves it out (and of jobs older than a row)."""
    return parse_body({}, EXTENSION_FIELDS)


def _check_extension(ext: Mapping[str, Any]) -> None:
    """Checks across the extension's fields."""
    if ext["quantization"] is not None and ext["adapter"] == "full":
        raise InvalidValue(
            "Invalid 'ftserve.quantization': a quantized base model cannot be fine-tuned in "
            "full; use adapter 'lora' or leave quantization null.",
            param="ftserve.quantization",
        )
    if ext["fsdp"] is True:
        if ext["adapter"] != "full":
            raise InvalidValue(
                "Invalid 'ftserve.fsdp': FSDP shards a full fine-tune; a LoRA adapter trains "
                "too few weights to need it. Set adapter to 'full' or leave fsdp 'auto'.",
                param="ftserve.fsdp",
            )
        if ext["devices"] == 1:
            raise InvalidValue(
                "Invalid 'ftserve.fsdp': sharding needs several devices; set ftserve.devices "
                "above 1 (or 'auto') or leave fsdp 'auto'.",
                param="ftserve.fsdp",
            )


def _check_reinforcement(f: Mapping[str, Any], ext: Mapping[str, Any]) -> None:
    """What a reinforcement job needs beyond its method: a validation file (Azure's rule: its
    rewards are how the job is judged) and one device."""
    if f["validation_file"] is None:
        raise InvalidValue(
            "A reinforcement fine-tuning job needs a 'validation_file': its prompts are graded "
            "at each evaluation, and the best checkpoints are chosen by their reward.",
            param="validation_file",
            code="missing_required_parameter",
        )
    for name, only in _ONE_DEVICE.items():
        if ext[name] != only:
            raise InvalidValue(
                f"Invalid 'ftserve.{name}': a reinforcement job trains on one device of one "
                f"worker; leave it {only}.",
                param=f"ftserve.{name}",
                code="unsupported_value",
            )
    if ext["fsdp"] is True:
        raise InvalidValue(
            "Invalid 'ftserve.fsdp': a reinforcement job trains on one device, so nothing is "
            "sharded; leave fsdp 'auto' or false.",
            param="ftserve.fsdp",
            code="unsupported_value",
        )


def _raw_grader(body: Mapping[str, Any]) -> Any:
    method = body.get("method")
    inner = method.get("reinforcement") if isinstance(method, dict) else None
    return inner.get("grader") if isinstance(inner, dict) else None


def parse_create(body: dict[str, Any], *, python_graders: bool = True) -> CreateJobRequest:
    """``python_graders``: the server's ``FTSERVE_PYTHON_GRADERS``."""
    if not python_graders:
        refuse_python(_raw_grader(body), "method.reinforcement.grader")
    f = parse_body(body, CREATE_JOB_FIELDS, unknown=unknown_parameter)
    ext = dict(f["ftserve"] or extension_defaults())
    if f["method"].type == "reinforcement":
        _check_reinforcement(f, ext)
    _check_extension(ext)
    if f["trainingType"] is not None:
        ext["training_type"] = f["trainingType"]
    return CreateJobRequest(
        model=f["model"],
        training_file=f["training_file"],
        validation_file=f["validation_file"],
        method=f["method"],
        suffix=f["suffix"],
        seed=secrets.randbelow(MAX_SEED + 1) if f["seed"] is None else f["seed"],
        metadata=f["metadata"],
        integrations=f["integrations"],
        extensions=ext,
    )


def request_schema() -> Json:
    return body_schema(
        CREATE_JOB_FIELDS, description="Unknown keys are refused (400 `unknown_parameter`)."
    )
