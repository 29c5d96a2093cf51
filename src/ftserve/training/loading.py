"""Finding the base model, choosing the device, loading model and tokenizer, attaching LoRA.

Models are loaded from local directories only (``local_files_only=True``; no remote code).
Tokenizers without a chat template get ``CHATML_FALLBACK_TEMPLATE`` (see
``ftserve.training.chat_templates``); tokenizers without a pad token pad with their EOS token
(padding positions are never scored, so which id fills them does not matter).

Device: ``"auto"`` is CUDA when available, else CPU. On CUDA the forward pass runs under bf16
autocast (fp32 when the card has no bf16); with LoRA the frozen base weights are loaded in bf16 to
halve their memory, while trainable weights (the adapter, or every weight in full fine-tuning)
stay fp32. On CPU everything is fp32.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ftserve.training.chat_templates import CHATML_FALLBACK_TEMPLATE
from ftserve.training.sources import materialize
from ftserve.training.spec import TrainingFailed, TrainingSpec


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    autocast_dtype: torch.dtype | None


def resolve_device(requested: str) -> DeviceChoice:
    if requested not in ("auto", "cpu", "cuda"):
        raise TrainingFailed("device_unavailable", f"Unknown device {requested!r}.")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return DeviceChoice(torch.device("cpu"), None)
    if not torch.cuda.is_available():
        raise TrainingFailed(
            "device_unavailable", "The job asks for a CUDA device, but none is available."
        )
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return DeviceChoice(torch.device("cuda"), dtype)


def resolve_model_dir(spec: TrainingSpec) -> Path:
    return materialize(spec.model, spec.models_cache_dir)


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise TrainingFailed(
            "model_load_failed", f"Could not load the tokenizer from {model_dir}: {exc}"
        ) from exc
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_FALLBACK_TEMPLATE
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise TrainingFailed(
                "unsupported_model",
                f"The tokenizer in {model_dir} has neither a pad token nor an EOS token.",
            )
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise TrainingFailed("unsupported_model", f"The tokenizer in {model_dir} has no EOS token.")
    return tokenizer


def _check_causal_lm(model_dir: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise TrainingFailed(
            "model_load_failed", f"Could not read the model config in {model_dir}: {exc}"
        ) from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise TrainingFailed(
            "unsupported_model",
            f"Model type {config.model_type!r} in {model_dir} is not a causal language model "
            "that transformers can load.",
        )


def load_model(model_dir: Path, choice: DeviceChoice, *, frozen_base: bool) -> Any:
    """Load a causal LM onto the chosen device. ``frozen_base``: its weights will not be
    trained (LoRA base, DPO reference), so on CUDA they may live in bf16."""
    from transformers import AutoModelForCausalLM

    _check_causal_lm(model_dir)
    dtype = torch.float32
    if frozen_base and choice.autocast_dtype is not None:
        dtype = choice.autocast_dtype
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, local_files_only=True
        )
    except Exception as exc:
        raise TrainingFailed(
            "model_load_failed", f"Could not load the model weights from {model_dir}: {exc}"
        ) from exc
    return model.to(choice.device)


def lora_config(spec: TrainingSpec, model: Any) -> Any:
    from peft import LoraConfig
    from transformers.pytorch_utils import Conv1D

    return LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        # GPT-2-style Conv1D layers store their weight transposed; PEFT warns unless told.
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )


def attach_lora(model: Any, spec: TrainingSpec) -> Any:
    from peft import get_peft_model

    with warnings.catch_warnings():
        # peft 0.21 probes `is_gradient_checkpointing`, which transformers 5 deprecates; the
        # notice is about peft's own code and nothing a job can act on.
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        return get_peft_model(model, lora_config(spec, model))


def freeze(model: Any) -> Any:
    model.eval()
    model.requires_grad_(False)
    return model


def frozen_copy(model: Any) -> Any:
    return freeze(copy.deepcopy(model))
