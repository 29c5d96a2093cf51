from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from ftserve.training.hyperparameters import (
    LinearWarmupDecay,
    auto_batch_size,
    auto_n_epochs,
    resolve,
)
from ftserve.training.spec import TrainingSpec


def spec(**overrides: object) -> TrainingSpec:
    fields: dict[str, object] = {
        "model": "ftserve-tiny",
        "training_file": Path("/nonexistent"),
        "validation_file": None,
        "method": "supervised",
        "n_epochs": None,
        "batch_size": None,
        "learning_rate_multiplier": None,
        "beta": None,
        "seed": 0,
        "work_dir": Path("/nonexistent"),
        "models_cache_dir": Path("/nonexistent"),
    }
    fields.update(overrides)
    return TrainingSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),
        (3, 25),
        (10, 10),
        (33, 3),
        (34, 3),
        (50, 3),
        (101, 3),
        (8333, 3),
        (8334, 2),
        (20000, 1),
        (100000, 1),
    ],
)
def test_auto_epochs_follow_openai_rule(n: int, epochs: int) -> None:
    assert auto_n_epochs(n) == epochs


@pytest.mark.parametrize(
    ("n", "batch"), [(1, 1), (50, 1), (101, 1), (749, 1), (1000, 2), (10000, 20), (500000, 256)]
)
def test_auto_batch_size_grows_slowly_and_is_capped(n: int, batch: int) -> None:
    assert auto_batch_size(n) == batch


def test_openai_cookbook_example_gives_303_steps() -> None:
    hp = resolve(spec(), 101)
    assert (hp.n_epochs, hp.batch_size, hp.total_steps, hp.beta) == (3, 1, 303, None)
    assert hp.learning_rate_multiplier == 1.0


def test_explicit_values_win_and_batch_is_clamped_to_the_data() -> None:
    hp = resolve(spec(n_epochs=2, batch_size=64, learning_rate_multiplier=0.5), 10)
    assert (hp.n_epochs, hp.batch_size, hp.total_steps, hp.learning_rate_multiplier) == (
        2,
        10,
        2,
        0.5,
    )
    assert resolve(spec(method="dpo"), 10).beta == 0.1
    assert resolve(spec(method="dpo", beta=0.3), 10).beta == 0.3


def test_schedule_warms_up_then_decays_without_a_zero_step() -> None:
    factor = LinearWarmupDecay(100)
    values = [factor(i) for i in range(100)]
    assert values[0] == pytest.approx(1 / 3)
    assert values[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[2:]))
    assert values[-1] > 0


def test_seam_modules_do_not_import_torch() -> None:
    code = (
        "import sys, ftserve.training, ftserve.training.spec; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
