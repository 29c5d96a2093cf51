"""What the dashboard's script must agree with the server on, as one JSON object each page
embeds (``<script type="application/json" id="server-facts">``, read by static/facts.js): the
job statuses, the final ones, the statuses each button may act from, the event types and the
step-metrics fields (losses, and a reinforcement job's rewards). Built from jobs/states.py,
events/messages.py, events/metrics.py and events/rewards.py, so the script copies none of it by
hand."""

from __future__ import annotations

from typing import Any, get_args

import orjson

from ..events import metrics, rewards
from ..events.messages import Kind
from ..jobs.states import FINAL, Action, Status, sources

# The job page's buttons, each named for the action it asks for (``POST …/{action}``).
BUTTONS = (Action.CANCEL, Action.PAUSE, Action.RESUME)


def server_facts() -> dict[str, Any]:
    return {
        "status": {s.name: s.value for s in Status},
        "final": sorted(FINAL),
        "allowed": {a.value: sorted(sources(a)) for a in BUTTONS},
        "event_type": {kind.upper(): kind for kind in get_args(Kind)},
        "metrics": {
            "fields": [
                {
                    "name": f.name,
                    "split": f.split.name if f.split else None,
                    "measure": f.measure,
                }
                for f in metrics.FIELDS
            ],
            "splits": [{"name": s.name, "label": s.label} for s in metrics.SPLITS],
            "step": metrics.STEP.name,
            "total_steps": metrics.TOTAL_STEPS.name,
        },
        # A reinforcement job's steps and checkpoints carry rewards instead (events/rewards.py):
        # what its charts plot, per split, and what its checkpoints hold.
        "rewards": {
            "method": rewards.METHOD,
            "marker": rewards.TRAIN_REWARD,
            "series": [
                {"key": key, "split": split.name, "label": split.label}
                for key, split in (
                    (rewards.TRAIN_REWARD, metrics.TRAIN),
                    (rewards.VALID_REWARD, metrics.FULL_VALID),
                )
            ],
            "completion_tokens": rewards.COMPLETION_TOKENS,
            "checkpoint": list(rewards.CHECKPOINT_KEYS),
        },
    }


def facts_json() -> str:
    """The facts as text safe inside a ``<script>`` element: ``<`` is escaped, so no value can
    close the element early."""
    return orjson.dumps(server_facts()).decode().replace("<", "\\u003c")
