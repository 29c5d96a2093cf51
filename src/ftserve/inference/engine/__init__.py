"""The model-running half of inference: load models, render prompts, decode in batches.

Only the inference process imports this package (it pulls in torch and transformers).
:class:`Engine` takes ``Generate`` requests and ``Cancel`` calls and sends protocol messages
through the callback it was given; ``ftserve.inference.process.main`` drives it over a
connection.
"""

from __future__ import annotations

from ftserve.inference.engine.decode import Batch, Row
from ftserve.inference.engine.models import BASE_ADAPTER, LoadedModel, ModelInfo, ModelStore
from ftserve.inference.engine.render import Rendered, RequestRejected, render
from ftserve.inference.engine.sampling import RowSampler, choose_tokens
from ftserve.inference.engine.scheduler import Engine
from ftserve.inference.engine.stops import IncrementalDecoder, StopMatcher

__all__ = [
    "BASE_ADAPTER",
    "Batch",
    "Engine",
    "IncrementalDecoder",
    "LoadedModel",
    "ModelInfo",
    "ModelStore",
    "Rendered",
    "RequestRejected",
    "Row",
    "RowSampler",
    "StopMatcher",
    "choose_tokens",
    "render",
]
