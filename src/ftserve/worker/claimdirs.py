"""Where a claim writes its files, and sweeping what no store row names.

Every claim of a job trains into its own directory, ``jobs/<job>/claim-<token>/`` under the
blob dir: checkpoints, the final model. Nothing there is the job's until a row committed under
that claim names it (a checkpoint row, the job's ``model_path``), so a process that lost its
claim can never overwrite or delete what the current claim relies on.

Deleting is safe by construction: once a claim is stale, the rows that name its files can only
go away (only a current claim adds rows, and only for its own directory), so anything no row
names now will never be named again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..store.protocol import Store

_PREFIX = "claim-"


def claim_dir(blob_dir: Path, job_id: str, token: str) -> Path:
    return blob_dir / "jobs" / job_id / f"{_PREFIX}{token}"


def sweep(
    store: Store, blob_dir: Path, job_id: str, *, only: str | None = None, keep: str | None = None
) -> None:
    """Delete the files in the job's claim directories that no row names: in the directory of
    claim ``only`` when given, else in all of them but that of ``keep`` (a claim still
    writing). Call it only for claims that are stale, or for every claim once the job is
    over."""
    root = blob_dir / "jobs" / job_id
    if not root.is_dir():
        return
    named = _named(store, blob_dir, job_id)
    for directory in root.iterdir():
        name = directory.name
        if not name.startswith(_PREFIX) or name == f"{_PREFIX}{keep}":
            continue
        if only is not None and name != f"{_PREFIX}{only}":
            continue
        _prune(directory, named)


def _named(store: Store, blob_dir: Path, job_id: str) -> set[Path]:
    page = store.list_checkpoints(None, job_id, after=None, limit=100_000)
    named = {Path(os.path.normpath(blob_dir / c.path)) for c in (page.items if page else [])}
    job = store.get_job(job_id)
    model_path = job.extensions.get("model_path") if job is not None else None
    if isinstance(model_path, str):
        named.add(Path(os.path.normpath(model_path)))
    return named


def _prune(directory: Path, named: set[Path]) -> None:
    """Remove everything under ``directory`` that is not, and does not hold, a named path."""
    here = Path(os.path.normpath(directory))
    if here in named:
        return
    if not any(here in p.parents for p in named):
        shutil.rmtree(here, ignore_errors=True)
        if here.exists() and not here.is_dir():
            here.unlink(missing_ok=True)
        return
    for child in here.iterdir():
        if child.is_dir() and not child.is_symlink():
            _prune(child, named)
        elif Path(os.path.normpath(child)) not in named:
            child.unlink(missing_ok=True)
