"""The job state machine, as a pure table."""

from __future__ import annotations

import pytest

from ftserve.jobs.states import FINAL, TRANSITIONS, Action, Status, refusal, sources, target


def test_final_states_have_no_way_out() -> None:
    for action, edges in TRANSITIONS.items():
        for source in edges:
            assert source not in FINAL, (action, source)


def test_user_actions() -> None:
    assert target(Action.CANCEL, "running") == Status.CANCELLED
    assert target(Action.CANCEL, "succeeded") is None
    assert target(Action.PAUSE, "running") == Status.PAUSED
    assert target(Action.PAUSE, "queued") == Status.PAUSED
    assert target(Action.PAUSE, "validating_files") is None
    assert target(Action.RESUME, "paused") == Status.QUEUED
    assert target(Action.RESUME, "running") is None
    assert target(Action.CANCEL, "not-a-status") is None


def test_every_status_is_reachable_from_creation() -> None:
    seen, frontier = {Status.VALIDATING_FILES}, [Status.VALIDATING_FILES]
    while frontier:
        s = frontier.pop()
        for edges in TRANSITIONS.values():
            nxt = edges.get(s)
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status)


@pytest.mark.parametrize("status", [s.value for s in Status])
@pytest.mark.parametrize("action", [Action.CANCEL, Action.PAUSE, Action.RESUME])
def test_refusals_say_why(status: str, action: Action) -> None:
    if status in sources(action):
        return
    text = refusal(action, status, "ftjob-x")
    assert "ftjob-x" in text and status.replace("_", " ")[:4] in text.replace("_", " ")
