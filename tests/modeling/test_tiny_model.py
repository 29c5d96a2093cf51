from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ftserve.modeling.tiny_model import ensure_tiny_model


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_build_is_byte_for_byte_reproducible(tmp_path: Path, models_cache: Path) -> None:
    fresh = ensure_tiny_model(tmp_path)
    assert fresh == tmp_path / "ftserve-tiny"
    assert digests(fresh) == digests(models_cache / "ftserve-tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["ftserve-tiny"]


def test_existing_model_is_reused(models_cache: Path) -> None:
    before = (models_cache / "ftserve-tiny" / "model.safetensors").stat().st_mtime_ns
    ensure_tiny_model(models_cache)
    assert (models_cache / "ftserve-tiny" / "model.safetensors").stat().st_mtime_ns == before


def test_two_processes_racing_leave_one_complete_model(tmp_path: Path, models_cache: Path) -> None:
    code = "import sys; from pathlib import Path; " + (
        "from ftserve.modeling.tiny_model import ensure_tiny_model; "
        "print(ensure_tiny_model(Path(sys.argv[1])))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs == [str(tmp_path / "ftserve-tiny")] * 2
    assert [p.name for p in tmp_path.iterdir()] == ["ftserve-tiny"]
    # Same bytes as the copy this process built: the build does not depend on the process.
    assert digests(tmp_path / "ftserve-tiny") == digests(models_cache / "ftserve-tiny")
