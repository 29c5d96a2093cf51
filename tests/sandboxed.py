"""Tests of python graders need bubblewrap to build their sandbox: without it they skip and say
why; with ``FTSERVE_REQUIRE_SANDBOX=1`` (CI) they fail instead."""

from __future__ import annotations

import os

import pytest

from ftserve.graders import sandbox


def require_sandbox() -> None:
    if sandbox.available():
        return
    reason = f"bubblewrap cannot build the python graders' sandbox here: {sandbox.INSTALL_HINT}"
    if os.environ.get("FTSERVE_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"FTSERVE_REQUIRE_SANDBOX=1 but {reason}")
    pytest.skip(reason)
