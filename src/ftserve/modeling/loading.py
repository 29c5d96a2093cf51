"""Loading a tokenizer and a causal LM from a materialized directory (see :mod:`.sources`).

Models are loaded from local directories only (``local_files_only=True``; no remote code).
Tokenizers without a chat template get ``CHATML_FALLBACK_TEMPLATE`` (see :mod:`.chat_templates`);
tokenizers without a pad token pad with their EOS token (padding positions are never scored, so
which id fills them does not matter). Weights that will not be trained may be loaded in the
device's autocast dtype (:mod:`.device`), or in 4 bits (``quantization="nf4"``, needs
bitsandbytes); trainable ones stay fp32.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from .chat_templates import CHATML_FALLBACK_TEMPLATE
from .device import DeviceChoice
from .errors import ModelFailed


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise ModelFailed(
            "model_load_failed", f"Could not load the tokenizer from {model_dir}: {exc}"
        ) from exc
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_FALLBACK_TEMPLATE
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelFailed(
                "unsupported_model",
                f"The tokenizer in {model_dir} has neither a pad token nor an EOS token.",
            )
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ModelFailed("unsupported_model", f"The tokenizer in {model_dir} has no EOS token.")
    return tokenizer


def _check_causal_lm(model_dir: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise ModelFailed(
            "model_load_failed", f"Could not read the model config in {model_dir}: {exc}"
        ) from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelFailed(
            "unsupported_model",
            f"Model type {config.model_type!r} in {model_dir} is not a causal language model "
            "that transformers can load.",
        )


def _nf4_config(choice: DeviceChoice) -> Any:
    """QLoRA's recipe (Dettmers et al., 2023): 4-bit NormalFloat weights with double-quantized
    scales, dequantized to the compute dtype (the device's autocast dtype, else fp32) for each
    matmul. bitsandbytes runs on CUDA and, from 0.49, on x86 CPUs."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelFailed(
            "quantization_unavailable",
            "ftserve.quantization 'nf4' needs the bitsandbytes package on the worker "
            "(pip install 'ftserve[qlora]'), which this worker lacks; install it there, or "
            "leave ftserve.quantization null.",
        ) from exc
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=choice.autocast_dtype or torch.float32,
    )


def load_model(
    model_dir: Path,
    choice: DeviceChoice,
    *,
    frozen_base: bool,
    quantization: str | None = None,
) -> Any:
    """Load a causal LM onto the chosen device. ``frozen_base``: its weights will not be
    trained (LoRA base, DPO reference), so on CUDA they may live in bf16. ``quantization``
    ``"nf4"`` (frozen bases only) stores the linear layers' weights in 4 bits."""
    from transformers import AutoModelForCausalLM

    _check_causal_lm(model_dir)
    dtype = torch.float32
    if frozen_base and choice.autocast_dtype is not None:
        dtype = choice.autocast_dtype
    extra: dict[str, Any] = {}
    if quantization is not None:
        if quantization != "nf4":
            raise ValueError(f"unknown quantization {quantization!r}")
        if not frozen_base:
            raise ValueError("only frozen weights can be quantized")
        # Quantized weights are placed as they load; they cannot be moved afterwards.
        device = choice.device
        place: int | str = "cpu"
        if device.type == "cuda":  # accelerate's device maps name a CUDA device by its index
            place = device.index if device.index is not None else torch.cuda.current_device()
        extra = {"quantization_config": _nf4_config(choice), "device_map": {"": place}}
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, local_files_only=True, **extra
        )
    except Exception as exc:
        raise ModelFailed(
            "model_load_failed", f"Could not load the model weights from {model_dir}: {exc}"
        ) from exc
    return model if quantization is not None else model.to(choice.device)


def freeze(model: Any) -> Any:
    model.eval()
    model.requires_grad_(False)
    return model


def frozen_copy(model: Any) -> Any:
    return freeze(copy.deepcopy(model))
