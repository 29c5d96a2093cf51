"""Where a claim writes its files, and sweeping what no store row names.

Every claim of a job trains into its own tree, ``jobs/<job>/claim-<token>/`` in the blob store:
checkpoints, the final model. Nothing there is the job's until a row committed under that claim
names it (a checkpoint row, the job's ``model_path``), so a process that lost its claim can
never overwrite or delete what the current claim relies on. On an object store, where nothing
can be renamed into place, this is what makes an upload visible: an uploaded tree whose row
never committed is garbage, and this sweep deletes it.

Deleting is safe by construction: once a claim is stale, the rows that name its files can only
go away (only a current claim adds rows, and only for its own tree), so anything no row names now
will never be named again.
"""

from __future__ import annotations

from pathlib import Path

from ..blobs import Blobs, LocalBlobs, tree_prefix
from ..store.protocol import Store

_PREFIX = "claim-"


def claim_key(job_id: str, token: str) -> str:
    return f"jobs/{job_id}/{_PREFIX}{token}"


def sweep(
    store: Store,
    blobs: Blobs | Path,
    job_id: str,
    *,
    only: str | None = None,
    keep: str | None = None,
) -> None:
    """Delete the blobs in the job's claim trees that no row names: in the tree of claim
    ``only`` when given, else in all of them but that of ``keep`` (a claim still writing).
    Call it only for claims that are stale, or for every claim once the job is over."""
    if isinstance(blobs, Path):
        blobs = LocalBlobs(blobs)
    root = f"jobs/{job_id}/"
    named = _named(store, blobs, job_id)

    def holds_name(tree: str) -> bool:
        return any(n == tree or n.startswith(tree + "/") for n in named)

    trees: set[str] = set()
    objects: set[str] = set()
    for info in blobs.list(root):
        parts = info.key.split("/")
        if len(parts) < 4 or not parts[2].startswith(_PREFIX):
            continue
        claim = parts[2][len(_PREFIX) :]
        if claim == keep or (only is not None and claim != only):
            continue
        if any(info.key.startswith(n + "/") for n in named):
            continue
        # The largest unnamed tree holding this key (walking down from the claim's own tree,
        # the first that holds no name), so a whole stale checkpoint goes in one prefix delete.
        for depth in range(3, len(parts)):
            tree = "/".join(parts[:depth])
            if not holds_name(tree):
                trees.add(tree)
                break
        else:
            objects.add(info.key)  # a stray file beside named trees
    for tree in sorted(trees):
        blobs.delete_prefix(tree_prefix(tree))
    for key in sorted(objects):
        blobs.delete(key)


def _named(store: Store, blobs: Blobs, job_id: str) -> set[str]:
    page = store.list_checkpoints(None, job_id, after=None, limit=100_000)
    named = {c.path.strip("/") for c in (page.items if page else [])}
    job = store.get_job(job_id)
    model_path = job.extensions.get("model_path") if job is not None else None
    if isinstance(model_path, str):
        key = blobs.key_of(model_path)
        if key is not None:
            named.add(key.strip("/"))
    return named
