"""The engine tests' fixtures (tests/inference/engine_harness.py)."""

from tests.inference.engine_harness import (  # noqa: F401  (fixtures)
    adapters,
    full_dir,
    harness,
    models_dir,
    tiny_dir,
)
from tests.training.conftest import gpt2_dir  # noqa: F401  (a fixture)
