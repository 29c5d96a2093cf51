"""Which device a model process runs on.

``"auto"`` is CUDA when available, else CPU. On CUDA the forward pass runs under bf16 autocast
(fp32 when the card has no bf16), and weights that are never trained (a LoRA base, a DPO
reference, every served model) may be loaded in bf16 to halve their memory; on CPU everything is
fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ModelFailed


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    autocast_dtype: torch.dtype | None


def resolve_device(requested: str) -> DeviceChoice:
    if requested not in ("auto", "cpu", "cuda"):
        raise ModelFailed("device_unavailable", f"Unknown device {requested!r}.")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return DeviceChoice(torch.device("cpu"), None)
    if not torch.cuda.is_available():
        raise ModelFailed(
            "device_unavailable", "The job asks for a CUDA device, but none is available."
        )
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return DeviceChoice(torch.device("cuda"), dtype)
