"""The create-job request, checked field by field, and the ``fine_tuning.job`` wire object.

Bounds follow the published spec: suffix 1..64 chars, n_epochs 1..50, batch_size 1..256,
learning_rate_multiplier > 0, beta in (0, 2], seed 0..2147483647, metadata ≤ 16 pairs (keys ≤ 64
chars, values ≤ 512), integrations ≤ 5.

ftserve's own extension is one namespaced object, ``"ftserve": {"adapter": "lora" | "full",
"lora_rank": int}``, so OpenAI's fields keep exactly their meaning. Azure's ``trainingType`` is
accepted and recorded (it picks a billing tier on Azure; nothing to pick here).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidValue
from ..params import (
    expect_int,
    expect_list,
    expect_number,
    expect_object,
    expect_str,
    reject_unknown,
    require,
)
from ..store.records import JobRecord

MAX_SEED = 2_147_483_647
_SUFFIX_FORBIDDEN = re.compile(r"[:\s]")

_TOP = frozenset(
    {
        "model",
        "training_file",
        "validation_file",
        "hyperparameters",
        "method",
        "suffix",
        "seed",
        "metadata",
        "integrations",
        "ftserve",
        "trainingType",
    }
)
_HP_KEYS = frozenset({"batch_size", "learning_rate_multiplier", "n_epochs"})


@dataclass
class CreateJobRequest:
    model: str
    training_file: str
    validation_file: str | None
    method: dict[str, Any]  # normalised: {"type", "<type>": {"hyperparameters": {...}}}
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[dict[str, Any]] | None
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The top-level (deprecated) view: the three common fields of the method's."""
        hp = self.method[self.method["type"]]["hyperparameters"]
        return {k: hp[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")}


def _auto_or(value: Any, param: str, check: Any) -> Any:
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, str):
        raise InvalidValue(
            f"Invalid value for '{param}': expected 'auto' or a number, but got '{value[:64]}'.",
            param=param,
        )
    return check(value, param)


def parse_hyperparameters(raw: Any, param: str, *, dpo: bool) -> dict[str, Any]:
    body = {} if raw is None else expect_object(raw, param)
    known = _HP_KEYS | {"beta"} if dpo else _HP_KEYS
    reject_unknown(body, known, prefix=param + ".")
    hp: dict[str, Any] = {
        "batch_size": _auto_or(
            body.get("batch_size"),
            f"{param}.batch_size",
            lambda v, p: expect_int(v, p, minimum=1, maximum=256),
        ),
        "learning_rate_multiplier": _auto_or(
            body.get("learning_rate_multiplier"),
            f"{param}.learning_rate_multiplier",
            lambda v, p: expect_number(v, p, exclusive_minimum=0.0),
        ),
        "n_epochs": _auto_or(
            body.get("n_epochs"),
            f"{param}.n_epochs",
            lambda v, p: expect_int(v, p, minimum=1, maximum=50),
        ),
    }
    if dpo:
        hp["beta"] = _auto_or(
            body.get("beta"),
            f"{param}.beta",
            lambda v, p: expect_number(v, p, exclusive_minimum=0.0, maximum=2.0),
        )
    return hp


def _parse_method(raw: Any, top_hp: Any) -> dict[str, Any]:
    if raw is None:
        return {
            "type": "supervised",
            "supervised": {
                "hyperparameters": parse_hyperparameters(top_hp, "hyperparameters", dpo=False)
            },
        }
    method = expect_object(raw, "method")
    reject_unknown(method, frozenset({"type", "supervised", "dpo", "reinforcement"}), "method.")
    kind = expect_str(require(method, "type", "method."), "method.type")
    if kind == "reinforcement":
        raise InvalidValue(
            "Reinforcement fine-tuning (method.type 'reinforcement') is not supported by this "
            "server; use 'supervised' or 'dpo'.",
            param="method.type",
            code="unsupported_value",
        )
    if kind not in ("supervised", "dpo"):
        raise InvalidValue(
            f"Invalid value for 'method.type': expected 'supervised' or 'dpo', but got "
            f"'{kind[:64]}'.",
            param="method.type",
        )
    for other in ("supervised", "dpo", "reinforcement"):
        if other != kind and method.get(other) is not None:
            raise InvalidValue(
                f"'method.{other}' was given, but method.type is '{kind}'.", param=f"method.{other}"
            )
    inner_raw = method.get(kind)
    inner = {} if inner_raw is None else expect_object(inner_raw, f"method.{kind}")
    reject_unknown(inner, frozenset({"hyperparameters"}), f"method.{kind}.")
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
    hp = parse_hyperparameters(source, name, dpo=kind == "dpo")
    return {"type": kind, kind: {"hyperparameters": hp}}


def _parse_metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    meta = expect_object(raw, "metadata")
    if len(meta) > 16:
        raise InvalidValue(
            f"Invalid 'metadata': too many keys. Expected at most 16 keys, but got {len(meta)}.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in meta.items():
        expect_str(key, "metadata", max_length=64)
        expect_str(value, f"metadata.{key}", max_length=512)
    return dict(meta)


def _parse_integrations(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    items = expect_list(raw, "integrations")
    if len(items) > 5:
        raise InvalidValue(
            "Invalid 'integrations': at most 5 integrations are allowed.",
            param="integrations",
            code="array_above_max_length",
        )
    out = []
    for i, item in enumerate(items):
        p = f"integrations[{i}]"
        obj = expect_object(item, p)
        reject_unknown(obj, frozenset({"type", "wandb"}), p + ".")
        kind = expect_str(require(obj, "type", p + "."), p + ".type")
        if kind != "wandb":
            raise InvalidValue(f"Invalid '{p}.type': only 'wandb' is supported.", param=p + ".type")
        wandb = expect_object(require(obj, "wandb", p + "."), p + ".wandb")
        reject_unknown(wandb, frozenset({"project", "name", "entity", "tags"}), p + ".wandb.")
        project = expect_str(
            require(wandb, "project", p + ".wandb."), p + ".wandb.project", min_length=1
        )
        clean: dict[str, Any] = {"project": project}
        for opt in ("name", "entity"):
            clean[opt] = (
                None if wandb.get(opt) is None else expect_str(wandb[opt], f"{p}.wandb.{opt}")
            )
        tags = wandb.get("tags")
        clean["tags"] = (
            None
            if tags is None
            else [
                expect_str(t, f"{p}.wandb.tags[{j}]", max_length=64)
                for j, t in enumerate(expect_list(tags, f"{p}.wandb.tags"))
            ]
        )
        out.append({"type": "wandb", "wandb": clean})
    return out


def _parse_extensions(body: dict[str, Any]) -> dict[str, Any]:
    ext: dict[str, Any] = {"adapter": "lora", "lora_rank": 8}
    raw = body.get("ftserve")
    if raw is not None:
        obj = expect_object(raw, "ftserve")
        reject_unknown(obj, frozenset({"adapter", "lora_rank"}), "ftserve.")
        if obj.get("adapter") is not None:
            adapter = expect_str(obj["adapter"], "ftserve.adapter")
            if adapter not in ("lora", "full"):
                raise InvalidValue(
                    f"Invalid 'ftserve.adapter': expected 'lora' or 'full', got '{adapter[:32]}'.",
                    param="ftserve.adapter",
                )
            ext["adapter"] = adapter
        if obj.get("lora_rank") is not None:
            ext["lora_rank"] = expect_int(
                obj["lora_rank"], "ftserve.lora_rank", minimum=1, maximum=1024
            )
    if body.get("trainingType") is not None:
        ext["training_type"] = expect_str(body["trainingType"], "trainingType", max_length=64)
    return ext


def parse_create(body: dict[str, Any]) -> CreateJobRequest:
    reject_unknown(body, _TOP)
    model = expect_str(require(body, "model"), "model", min_length=1, max_length=4096)
    training_file = expect_str(
        require(body, "training_file"), "training_file", min_length=1, max_length=256
    )
    validation_file = body.get("validation_file")
    if validation_file is not None:
        validation_file = expect_str(
            validation_file, "validation_file", min_length=1, max_length=256
        )
    suffix = body.get("suffix")
    if suffix is not None:
        suffix = expect_str(suffix, "suffix", min_length=1, max_length=64)
        if _SUFFIX_FORBIDDEN.search(suffix):
            raise InvalidValue(
                "Invalid 'suffix': it becomes part of the model name, so it may not contain ':' "
                "or whitespace.",
                param="suffix",
            )
    seed_raw = body.get("seed")
    seed = (
        secrets.randbelow(MAX_SEED + 1)
        if seed_raw is None
        else expect_int(seed_raw, "seed", minimum=0, maximum=MAX_SEED)
    )
    return CreateJobRequest(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        method=_parse_method(body.get("method"), body.get("hyperparameters")),
        suffix=suffix,
        seed=seed,
        metadata=_parse_metadata(body.get("metadata")),
        integrations=_parse_integrations(body.get("integrations")),
        extensions=_parse_extensions(body),
    )


def job_object(job: JobRecord) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job",
        "id": job.id,
        "model": job.model,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": "org-" + job.organization,
        "result_files": job.result_files,
        "status": job.status,
        "validation_file": job.validation_file,
        "training_file": job.training_file,
        "hyperparameters": job.hyperparameters,
        "trained_tokens": job.trained_tokens,
        "error": job.error,
        "user_provided_suffix": job.suffix,
        "seed": job.seed,
        "estimated_finish": job.estimated_finish,
        "integrations": job.integrations or [],
        "metadata": job.metadata,
        "method": job.method,
        "ftserve": job.extensions,
    }
