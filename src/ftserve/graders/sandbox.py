"""``python`` graders: the grader's ``grade(sample, item) -> float`` runs in a child Python of
its own, in a new user and network namespace (``unshare -rn``: no network, not even loopback),
isolated mode (no user site, no environment), an empty working directory, and rlimits on CPU
time, address space, written file size and processes; a wall-clock timeout kills it.

The child has the packages this server's Python has (numpy among them); ``image_tag`` is
accepted and has no effect. Where namespaces are unavailable the type is refused with a 400:
running graders' code with network access would not be the sandbox OpenAI promises."""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from typing import Any

CPU_SECONDS = 10
WALL_SECONDS = 15
MEMORY_BYTES = 2 << 30
OUTPUT_BYTES = 1 << 20

# Run in the child: read the grader and the sample on stdin, answer one JSON line on stdout.
_CHILD = r"""
import json, sys, traceback
job = json.loads(sys.stdin.read())
sys.stdin = None
try:
    scope = {"__name__": "grader"}
    exec(compile(job["source"], "<grader>", "exec"), scope)
    value = scope["grade"](job["sample"], job["item"])
    out = {"score": value if isinstance(value, (int, float)) and not isinstance(value, bool)
           else None, "type": type(value).__name__}
except BaseException as e:
    out = {"error": "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]}
sys.__stdout__.write("\n" + json.dumps(out) + "\n")
"""


@dataclass(frozen=True)
class Result:
    score: float | None
    error: str | None = None  # the runtime error's details (the grader's fault)
    server_error: str | None = None  # the sandbox's own failure (not the grader's)


@cache
def available() -> bool:
    """Whether this host can make the no-network namespace (probed once)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run(
            [unshare, "-rn", sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_BYTES, OUTPUT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(source: str, sample: dict[str, Any], item: dict[str, Any]) -> Result:
    unshare = shutil.which("unshare")
    if unshare is None:
        return Result(None, server_error="no sandbox on this host")
    job = json.dumps({"source": source, "sample": sample, "item": item})
    with tempfile.TemporaryDirectory(prefix="ftserve-grader-") as cwd:
        try:
            done = subprocess.run(
                [unshare, "-rn", sys.executable, "-I", "-c", _CHILD],
                input=job.encode(),
                capture_output=True,
                timeout=WALL_SECONDS,
                cwd=cwd,
                env={"PATH": "/usr/bin:/bin", "HOME": cwd, "OMP_NUM_THREADS": "1"},
                preexec_fn=_limits,
            )
        except subprocess.TimeoutExpired:
            return Result(None, error=f"the grader ran past its {WALL_SECONDS} s limit")
        except OSError as e:
            return Result(None, server_error=type(e).__name__)
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        # Killed (CPU or memory limit) before answering.
        why = "its CPU time or memory limit" if done.returncode < 0 else "an unexpected exit"
        return Result(None, error=f"the grader ended with {why} (exit {done.returncode})")
    if "error" in answer:
        return Result(None, error=str(answer["error"]))
    score = answer.get("score")
    if not isinstance(score, int | float) or not math.isfinite(score):
        return Result(None, error=f"grade() returned {answer.get('type')}, not a finite number")
    return Result(float(score))
