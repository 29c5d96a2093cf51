"""``python`` graders: the grader's ``grade(sample, item) -> float`` runs in a short-lived Python
inside a bubblewrap (``bwrap``) sandbox: its own network (no route out, not even to the host's
loopback), pid, IPC and UTS namespaces; a root of its own that holds only a read-only ``/usr``, the
interpreter's prefixes and site-packages (never the repository, the working directory or the data
dir) and a private size-capped ``/tmp``; an empty environment (the server's variables, API keys
among them, do not reach it); no user namespaces of its own; ``--die-with-parent``. Started by
root, the grader drops to ``nobody`` with no capabilities (``setpriv``); started by another user,
it runs in a user namespace of its own. Limits: CPU time and wall clock per sample, address
space per process, a process count, file size.

One sandbox grades a whole batch (:func:`run_many`: a training step's samples for one grader): a
sample that breaks its limits gets its error; one that ends the sandbox (memory, ``os._exit``, a
fork bomb that outlives its wall clock) gets its error and the samples after it go on in a fresh
sandbox. The packages are those of this server's Python (numpy among them); ``image_tag`` is
accepted and has no effect. Where bubblewrap cannot build the sandbox, python graders are refused
(a 400 at validation): they never run unsandboxed."""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CPU_SECONDS = 10  # per sample
WALL_SECONDS = 15  # per sample
START_SECONDS = 30  # the sandbox's start, before any sample
MEMORY_BYTES = 2 << 30  # address space of each process
PROCESSES = 8  # processes and threads the grader may have at once
OUTPUT_BYTES = 1 << 20  # largest file the grader may write, and largest answer per sample
TMP_BYTES = 64 << 20  # the private /tmp
NOBODY = 65534
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`)"

# The driver, run in the sandbox: the jobs on stdin; one JSON line per step on a private copy of
# stdout (the grader's own prints go to /dev/null and cannot forge an answer by accident).
_DRIVER = r"""
import ctypes, json, numbers, os, resource, signal, sys, traceback
job = json.loads(sys.stdin.read())
me = os.getpid()
# The grader's orphans become this process's children, so that all of them can be reaped.
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
sys.stdin = None
out = os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)
# Set here, before any of the grader's code, rather than before the sandbox starts: a training
# process has threads, with which a fork's pre-exec hook is unsafe. The grader cannot raise them.
for name, value in job["limits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))

class Limit(BaseException):
    pass

def _cpu(signum, frame):
    raise Limit(f"the grader ran past its CPU time limit ({job['cpu']} s)")

def _wall(signum, frame):
    raise Limit(f"the grader ran past its wall-clock limit ({job['wall']} s)")

signal.signal(signal.SIGPROF, _cpu)
signal.signal(signal.SIGALRM, _wall)

def say(answer):
    out.write(json.dumps(answer) + "\n")
    out.flush()

def limited(call):
    try:
        signal.setitimer(signal.ITIMER_PROF, job["cpu"])
        signal.setitimer(signal.ITIMER_REAL, job["wall"])
        try:
            return {"value": call()}
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Limit as e:
        return {"error": str(e)}
    except BaseException as e:
        return {"error": "".join(traceback.format_exception_only(type(e), e)).strip()[-2000:]}
    finally:
        if os.getpid() != me:
            os._exit(0)  # a process the grader forked, back in this code: it answers nothing
        # Whatever the grader started is ended before the next sample (pid namespace: only its
        # own processes are in reach), until none is left.
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break

say({"ready": True})
scope = {"__name__": "grader"}
loaded = limited(lambda: exec(compile(job["source"], "<grader>", "exec"), scope))
say({"loaded": loaded.get("error")})
if "error" not in loaded:
    for sample, item in job["jobs"]:
        got = limited(lambda: scope["grade"](sample, item))
        value = got.pop("value", None)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            got["score"] = float(value)
        elif "error" not in got:
            got["type"] = type(value).__name__
        say(got)
"""


@dataclass(frozen=True)
class Result:
    score: float | None
    error: str | None = None  # the runtime error's details (the grader's fault)
    server_error: str | None = None  # the sandbox's own failure (not the grader's)


def _mounts() -> list[str]:
    """bwrap's arguments for the sandbox's root: the system read-only, and of this server's own
    files only the Python it runs on (prefix, base prefix, site-packages)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    wanted = [sys.prefix, sys.base_prefix, *site.getsitepackages()]
    paths = {Path(p) for p in wanted} | {Path(p).resolve() for p in wanted}
    binds = sorted(p for p in paths if p.is_dir())
    # A path under another one already bound needs no mount of its own.
    binds = [p for p in binds if not any(q != p and q in p.parents for q in binds)]
    binds = [p for p in binds if Path("/usr") not in p.parents and p != Path("/usr")]
    # bwrap makes missing parents 0700: made 0755 here so that nobody can reach the binds.
    parents = sorted({str(a) for p in binds for a in p.parents if a != Path("/")})
    for parent in parents:
        args += ["--perms", "0755", "--dir", parent]
    for p in binds:
        args += ["--ro-bind", str(p.resolve()), str(p)]
    return args


@cache
def _command() -> tuple[str, ...] | None:
    """The command that starts this server's Python in a sandbox, or None without bubblewrap."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    env = {
        "HOME": "/tmp",
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    args = [bwrap, "--die-with-parent", "--new-session", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    tail = [sys.executable, "-I", "-B"]
    if os.geteuid() == 0:
        # Root builds the sandbox without a user namespace (it can bind what only root may
        # reach, such as a Python under /root); the grader then runs as nobody with no
        # capabilities, so the process count is a real limit (root is exempt from it), inside a
        # second bubblewrap of nobody's own that takes away user namespaces: in one of its own
        # the grader could mount a tmpfs that no memory limit counts.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        args += ["--unshare-cgroup-try"]
        drop = ["--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
        inner = [bwrap, "--unshare-user", "--unshare-pid", "--disable-userns"]
        inner += ["--die-with-parent", "--ro-bind", "/", "/", "--bind", "/tmp", "/tmp"]
        inner += ["--dev", "/dev", "--remount-ro", "/dev", "--chdir", "/tmp", "--"]
        tail = [setpriv, *drop, "--bounding-set=-all", "--no-new-privs", "--", *inner, *tail]
    else:
        args += ["--unshare-all", "--unshare-user", "--disable-userns"]
    # The private /tmp first: a Python installed under /tmp (a virtualenv in a temporary
    # checkout) is then bound on top of it, not hidden by it.
    args += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    args += _mounts()
    args += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp"]
    # bwrap's own root and /dev are tmpfs without a size cap, writable by the grader in a user
    # namespace: read-only, only the size-capped /tmp takes the grader's files.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return (*args, "--", *tail)


@cache
def available() -> bool:
    """Whether bubblewrap can build the sandbox on this host: one grader run in it (once)."""
    if _command() is None:
        return False
    [probe] = _session("def grade(sample, item):\n    return 1.0\n", [({}, {})])
    return probe.score == 1.0


def _limits(samples: int) -> dict[str, int]:
    """The rlimits of every process in the sandbox. The CPU cap backs up the driver's per-sample
    timers (which the grader's code could disarm); the process count binds because the grader is
    never root (root is exempt from it)."""
    return {
        "RLIMIT_CPU": CPU_SECONDS * (samples + 1),
        "RLIMIT_AS": MEMORY_BYTES,
        "RLIMIT_FSIZE": OUTPUT_BYTES,
        "RLIMIT_CORE": 0,
        "RLIMIT_NPROC": PROCESSES,
    }


class _Lines:
    """The sandbox's answers, a line at a time, each awaited until a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)

    def next(self, seconds: float) -> dict[str, Any] | str:
        """The next answer, or why there is none: "timeout", "closed" or "garbled"."""
        deadline = time.monotonic() + seconds
        while b"\n" not in self.buffer:
            if len(self.buffer) > OUTPUT_BYTES:
                return "garbled"
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                return "timeout"
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return "closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:
            return "garbled"
        return answer if isinstance(answer, dict) else "garbled"

    def close(self) -> None:
        self.selector.close()


def _answer(answer: dict[str, Any]) -> Result:
    if answer.get("error") is not None:
        return Result(None, error=str(answer["error"]))
    score = answer.get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score):
        what = answer.get("type") if "type" in answer else type(score).__name__
        return Result(None, error=f"grade() returned {what}, not a finite number")
    return Result(float(score))


def _ended(proc: subprocess.Popen[bytes], why: str) -> str:
    if why == "timeout":
        return f"the grader ran past its wall-clock limit ({WALL_SECONDS} s)"
    if why == "garbled":
        return "the grader broke its sandbox's answer channel"
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return (
        f"the grader ended its sandbox (exit {code}): it ran out of memory, exited, or ran past "
        "a limit of its process"
    )


def _session(source: str, jobs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[Result]:
    """Grades from the first job on in one sandbox; returns at least one result."""
    command = _command()
    if command is None:
        return [Result(None, server_error=f"no sandbox: {INSTALL_HINT}")] * len(jobs)
    payload = json.dumps(
        {
            "source": source,
            "jobs": [list(j) for j in jobs],
            "cpu": CPU_SECONDS,
            "wall": WALL_SECONDS,
            "limits": _limits(len(jobs)),
        }
    ).encode()
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                [*command, "-c", _DRIVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd="/",
                env={},
            )
        except OSError as e:
            return [Result(None, server_error=f"the sandbox did not start: {e}")] * len(jobs)
        feed = threading.Thread(target=_feed, args=(proc, payload), daemon=True)
        feed.start()
        lines = _Lines(proc)
        try:
            ready = lines.next(START_SECONDS)
            if not isinstance(ready, dict):
                proc.kill()
                proc.wait()
                errors.seek(0)
                said = errors.read()[-500:].decode("utf-8", "replace").strip()
                why = f"the sandbox did not start ({ready}, exit {proc.returncode}): {said}"
                return [Result(None, server_error=why)] * len(jobs)
            # The module's own code runs under a sample's limits; its failure fails them all.
            loaded = lines.next(WALL_SECONDS + 2)
            if not isinstance(loaded, dict) or loaded.get("loaded") is not None:
                details = (
                    str(loaded["loaded"]) if isinstance(loaded, dict) else _ended(proc, loaded)
                )
                return [Result(None, error=details)] * len(jobs)
            results: list[Result] = []
            for _ in jobs:
                answer = lines.next(WALL_SECONDS + 2)
                if not isinstance(answer, dict):
                    results.append(Result(None, error=_ended(proc, answer)))
                    break
                results.append(_answer(answer))
            return results
        finally:
            lines.close()
            proc.kill()
            proc.wait()
            feed.join()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


def _feed(proc: subprocess.Popen[bytes], payload: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except OSError:
        pass  # the sandbox ended early; its end is reported by the reader


def run_many(source: str, jobs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[Result]:
    """Grades each ``(sample, item)`` with ``source``'s ``grade``, all in one sandbox while it
    lasts: a sample that ends it costs a fresh one for the samples after it."""
    results: list[Result] = []
    while len(results) < len(jobs):
        results += _session(source, jobs[len(results) :])
    return results


def run(source: str, sample: dict[str, Any], item: dict[str, Any]) -> Result:
    return run_many(source, [(sample, item)])[0]
