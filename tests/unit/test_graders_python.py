"""``python`` graders in their sandbox: a score, the packages, and each way one fails (network,
CPU, memory, a wrong return, an exception) as a runtime error flag with its details."""

from __future__ import annotations

from typing import Any

import pytest

from ftserve.errors import ApiError
from ftserve.graders import grading, sandbox
from ftserve.graders.schemas import check_grader
from tests.sandboxed import require_sandbox


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_sandbox()


def _run(source: str, sample: str = '{"a": 2}', item: dict[str, Any] | None = None) -> Any:
    g = check_grader({"type": "python", "name": "p", "source": source}, "grader")
    result = grading.run(g, sample, {"a": 2} if item is None else item)
    errors = {k: v for k, v in result["metadata"]["errors"].items() if v}
    return result["reward"], errors


def test_scores_with_sample_item_and_numpy() -> None:
    source = (
        "import numpy as np\n"
        "def grade(sample, item):\n"
        "    hit = sample['output_json']['a'] == item['a']\n"
        "    return float(np.mean([hit, sample['output_text'].startswith('{')]))\n"
    )
    assert _run(source) == (1.0, {})
    assert _run(source, '{"a": 3}') == (0.5, {})


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (
            "import socket; socket.create_connection(('127.0.0.1', 9)); return 1.0",
            "Connection refused",
        ),
        ("x = bytearray(3 << 30); return 1.0", "MemoryError"),
        ("return 'yes'", "grade() returned str, not a finite number"),
        ("print('{\"score\": 1}'); raise ValueError('bad')", "ValueError: bad"),
        ("while True: pass", "ran past its CPU time limit (1 s)"),
    ],
)
def test_failures_are_flagged(body: str, details: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "CPU_SECONDS", 1)
    reward, errors = _run(f"def grade(sample, item):\n    {body}\n")
    assert reward == 0.0 and errors["python_grader_runtime_error"]
    assert details in errors["python_grader_runtime_error_details"]


@pytest.mark.parametrize(
    ("source", "wording"), [("def grade(:", "invalid syntax"), ("x = 1", "must define")]
)
def test_bad_source_is_a_400(source: str, wording: str) -> None:
    with pytest.raises(ApiError) as e:
        check_grader({"type": "python", "name": "p", "source": source}, "grader")
    assert e.value.param == "grader.source" and wording in e.value.message
