"""The one failure of the model layer; callers translate it into their own (a training job's
``TrainingFailed``, the inference process's ``ModelUnavailable``)."""

from __future__ import annotations


class ModelFailed(Exception):
    """A model cannot be found, built, read or placed; ``code`` is machine-readable, ``message``
    is meant for the user.

    Codes: ``model_load_failed``, ``unsupported_model``, ``device_unavailable``,
    ``quantization_unavailable``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
