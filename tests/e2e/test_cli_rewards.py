"""The CLI on a reinforcement fine-tuning job: ``jobs events --follow`` shows the train reward
and the last validation reward where a supervised job's bar shows the loss, and ``jobs
checkpoints`` lists the checkpoints' rewards (their losses are null). The job is planted in the
store with the trainer's own event and checkpoint builders (events/rewards.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ftserve.cli.follow import BarView, _FigureColumn
from tests.conftest import Server
from tests.e2e.test_cli import ftserve
from tests.unit import reward_steps


@pytest.fixture(scope="module")
def rft_job(server: Server) -> str:
    return reward_steps.plant_rft(server).job_id


def test_follow_shows_the_rewards(server: Server, rft_job: str) -> None:
    out = ftserve(server, "jobs", "events", rft_job, "--follow")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "step 5/5" in out.stdout
    # The last step's train reward, and step 4's validation reward (step 5 measured none).
    assert "reward 1.0000 valid 0.7500" in out.stdout
    assert "loss" not in out.stdout
    assert "The job has successfully completed" in out.stdout


def test_events_list_the_reward_messages(server: Server, rft_job: str) -> None:
    out = ftserve(server, "jobs", "events", rft_job)
    assert out.returncode == 0, out.stderr
    assert (
        "Step 4/5 , train mean reward=0.75, full validation mean reward=0.75, "
        "full validation mean parse error=0.25" in out.stdout
    )


def test_checkpoints_list_their_rewards(server: Server, rft_job: str) -> None:
    out = ftserve(server, "jobs", "checkpoints", rft_job)
    assert out.returncode == 0, out.stderr
    head, *lines = out.stdout.splitlines()
    assert head.split()[3:7] == ["TRAIN", "REWARD", "VALID", "REWARD"]
    rows = {r[1]: r[3:5] for r in (line.split() for line in lines)}
    assert rows == {
        "5": ["1.0000", "-"],
        "4": ["0.7500", "0.7500"],
        "2": ["0.5000", "0.5000"],
    }


def _figures(method: str, *datas: dict[str, Any]) -> list[str]:
    """What the bar's figure column reads for a job of ``method``, before its first step and
    after each step given."""
    job = SimpleNamespace(
        id="ftjob-x",
        status="running",
        created_at=0,
        finished_at=None,
        method=SimpleNamespace(type=method),
    )
    view = BarView(job)
    column = next(c for c in view.progress.columns if isinstance(c, _FigureColumn))
    seen = [column.render(view.progress.tasks[0]).plain]
    for i, data in enumerate(datas):
        view.event("", {"type": "metrics", "created_at": i, "data": data})
        seen.append(column.render(view.progress.tasks[0]).plain)
    return seen


def test_the_bar_reads_rewards_from_the_start_and_keeps_the_last_validation() -> None:
    steps = reward_steps.STEPS
    assert _figures("reinforcement", steps[1], steps[2], steps[3]) == [
        "reward -",
        "reward 0.2500",
        "reward 0.5000 valid 0.5000",
        "reward 0.7500 valid 0.5000",
    ]
    assert _figures("supervised") == ["loss -"]
