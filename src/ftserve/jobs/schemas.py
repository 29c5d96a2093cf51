"""The create-job request, declared once as :class:`~ftserve.wire.fields.Field` tables: the
checks (OpenAI's wording and codes), the request schema in the OpenAPI document and the
hyperparameter and integration schemas of the job object all come from these tables.

Bounds follow the published spec (each one constant below): suffix 1..64 chars, n_epochs 1..50,
batch_size 1..256, learning_rate_multiplier > 0, beta in (0, 2], compute_multiplier in
(0.00001, 10], eval_interval and eval_samples ≥ 1, seed 0..2147483647, metadata ≤ 16 pairs (keys
≤ 64 chars, values ≤ 512), integrations ≤ 5.

ftserve's own extension is one namespaced object, ``"ftserve": {"adapter": "lora" | "full",
"lora_rank": int, ...}`` (:data:`EXTENSION_FIELDS`), so OpenAI's fields keep exactly their
meaning. Azure's ``trainingType`` is
accepted and recorded (it picks a billing tier on Azure; nothing to pick here).

``method`` and the deprecated top-level ``hyperparameters`` (one decision, checked together) and
the hyperparameters' tables are in :mod:`.method_schemas`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidValue
from ..graders.policy import refuse_python
from ..params import expect_object, expect_str
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
from ..wire.shapes import ref
from .method import Hyperparameters, Method
from .method_schemas import (
    DPO_HYPERPARAMETERS,
    REINFORCEMENT_HYPERPARAMETERS,
    method_schema,
    parse_method,
)

Json = dict[str, Any]

MAX_SEED = 2_147_483_647
MODEL_MAX_LENGTH = 4096
FILE_ID_MAX_LENGTH = 256
SUFFIX_MAX_LENGTH = 64
TRAINING_TYPE_MAX_LENGTH = 64
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
# What a reinforcement job may not ask of ftserve's options: its trainer runs on one device.
_ONE_DEVICE = {"devices": 1, "nodes": 1}
MAX_COMPLETION_TOKENS_MAX = 32_768
PAGING = Paging("job", "Jobs", default_limit=20)

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
    Field(
        "max_completion_tokens",
        "integer",
        "Reinforcement jobs: the longest answer sampled for grading, in tokens (an answer cut "
        "there ends with finish reason `length`). `auto`: 256. Shorter answers make each step "
        "cheaper; a grader of short answers needs no more.",
        1,
        MAX_COMPLETION_TOKENS_MAX,
        auto=True,
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
    return parse_method(body.get("method"), body.get("hyperparameters"))


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
        schema=method_schema(),
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
    elif ext["max_completion_tokens"] != "auto":
        raise InvalidValue(
            "Invalid 'ftserve.max_completion_tokens': only reinforcement jobs sample answers; "
            "leave it 'auto' (or out) for this method.",
            param="ftserve.max_completion_tokens",
            code="unsupported_value",
        )
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
