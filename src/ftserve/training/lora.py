"""Attaching a LoRA adapter to a loaded model, as a job's spec asks (see ``TrainingSpec``).

With LoRA the base model is loaded as frozen weights (bf16 on a CUDA card that has it, see
``ftserve.modeling.device``) and only the adapter, in fp32, is trained.
"""

from __future__ import annotations

import warnings
from typing import Any

from ftserve.training.spec import TrainingSpec


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
