"""The conformance suite calls every method of the Store protocol (so every one runs on both
backends): a method added to the protocol without a test here fails this."""

from __future__ import annotations

import re
from pathlib import Path

from ftserve.store.protocol import Store

_BOTH = [
    p
    for p in Path(__file__).parent.glob("test_*.py")
    if "pytest.mark.both_backends" in p.read_text()
]


def test_every_store_method_is_called_by_a_test_on_both_backends() -> None:
    methods = {
        name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")
    }
    called = {m for p in _BOTH for m in re.findall(r"\.(\w+)\(", p.read_text())}
    assert len(methods) >= 25
    assert methods - called == set()
