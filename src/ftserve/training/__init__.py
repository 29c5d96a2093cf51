"""The training engine. Importing this package is cheap (no torch): the API process uses the
data types from :mod:`ftserve.training.spec`; only the worker's child process imports
:mod:`ftserve.training.trainer`, whose ``train(spec, hooks)`` runs a job.
"""

from ftserve.training.spec import (
    CheckpointInfo,
    Control,
    MemoryPlan,
    ResolvedHyperparameters,
    StepMetrics,
    TrainingFailed,
    TrainingHooks,
    TrainingResult,
    TrainingSpec,
    TrainingStopped,
)

__all__ = [
    "CheckpointInfo",
    "Control",
    "MemoryPlan",
    "ResolvedHyperparameters",
    "StepMetrics",
    "TrainingFailed",
    "TrainingHooks",
    "TrainingResult",
    "TrainingSpec",
    "TrainingStopped",
]
