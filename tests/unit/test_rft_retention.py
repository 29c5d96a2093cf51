"""Which checkpoints a reinforcement job keeps: the three best by validation reward, and the
newest (what a resume starts from) whatever its reward."""

from __future__ import annotations

from ftserve.store.records import CheckpointRecord
from ftserve.worker.hooks import retired


def record(step: int, reward: float | None, kind: str = "eval") -> CheckpointRecord:
    return CheckpointRecord(
        id=f"ckpt-{step}",
        job_id="ftjob-x",
        created_at=step,
        step_number=step,
        fine_tuned_model_checkpoint=f"ft:x:ckpt-step-{step}",
        metrics={"step": float(step), "valid_reward_mean": reward},
        path=f"p/{step}",
        kind=kind,
    )


def kept(rewards: list[float], keep: int = 3) -> list[int]:
    rows: list[CheckpointRecord] = []
    for step, reward in enumerate(rewards, start=1):
        new = record(step, reward)
        drop, _ = retired(rows, new, keep)
        rows = [r for r in [*rows, new] if r not in drop]
    return sorted(r.step_number for r in rows)


def test_the_three_best_and_the_newest_are_kept() -> None:
    assert kept([0.1, 0.5, 0.3, 0.4, 0.2]) == [2, 3, 4, 5]
    assert kept([0.1, 0.5, 0.3, 0.4, 0.2, 0.6]) == [2, 4, 6]
    # Equal rewards: the later checkpoint stays.
    assert kept([0.5, 0.5, 0.5, 0.5]) == [2, 3, 4]


def test_a_pause_checkpoint_goes_once_a_newer_one_exists() -> None:
    rows = [record(1, 0.2), record(2, None, kind="pause")]
    drop, unused = retired(rows, record(3, 0.1), 3)
    assert [d.step_number for d in drop] == [2] and unused == ["p/2"]
