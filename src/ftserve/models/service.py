"""Every model a caller can name: base models (the registry) and its organization's fine-tuned
models, with their checkpoints; and what deleting one means.

A fine-tuned model is ``job.fine_tuned_model`` of a ``succeeded`` job; its checkpoint models are
the ``ft:…:ckpt-step-N`` names of that job's checkpoint rows (the row of the final step carries
the plain model name: it *is* the final model). A job in any other status exposes nothing, and
another organization's models do not exist for this caller (404, never 403: no existence leak).

Deleting records the names in the store first (one transaction), then removes the weights from
the blob store (and this machine's cached copies), so a crash in between leaves garbage files,
never a listed model without weights.
The job stays exactly as it was (``fine_tuned_model`` still names the model: it is history), and
so do its checkpoint rows (``GET /fine_tuning/jobs/{id}/checkpoints`` still lists them).

Undocumented by OpenAI, decided here:

* checkpoint models are listed (after their final model) and can be retrieved, served and
  deleted one by one; deleting ``ft:X`` deletes its checkpoint models too;
* a checkpoint model's ``created`` is when the checkpoint was saved; the final model's is the
  job's ``finished_at`` (as OpenAI's);
* deleting a base model is a 403 ``model_not_deletable`` (type ``invalid_request_error``, as
  every OpenAI 4xx; the SDKs raise ``PermissionDeniedError``);
* a deleted name answers exactly as a name that never existed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..blobs import BlobCache, BlobError, BlobUnavailable, tree_prefix
from ..errors import InvalidValue, ModelNotDeletable, ModelNotFound, UnknownModel
from ..inference.protocol import ModelKind, ServedModel
from ..jobs.states import Status
from ..store.protocol import Store
from ..store.records import CheckpointRecord, JobRecord
from .registry import ModelRegistry, ResolvedModel, model_object
from .schemas import MODEL_DELETED, model

log = logging.getLogger("ftserve.models")

_CHECKPOINT = re.compile(r"^(?P<model>ft:.+):ckpt-step-(?P<step>[0-9]+)$")


@dataclass(frozen=True, slots=True)
class FineTuned:
    name: str
    job: JobRecord
    checkpoint: CheckpointRecord | None  # None: the job's final model


class ModelService:
    """``ctx.services.models``: the registry's ``resolve``/``available`` (what jobs use), plus
    the organization-aware views of the models routes and of inference (``served``)."""

    def __init__(self, registry: ModelRegistry, store: Store, blobs: BlobCache | Path) -> None:
        from ..files.service import as_cache

        self.registry = registry
        self._store = store
        self._blobs = as_cache(blobs)

    # -- base models (the registry) ----------------------------------------------------------
    def resolve(self, model: str) -> ResolvedModel:
        return self.registry.resolve(model)

    def available(self) -> list[ResolvedModel]:
        return self.registry.available()

    # -- fine-tuned models -------------------------------------------------------------------
    def _checkpoints(self, job: JobRecord) -> list[CheckpointRecord]:
        """The job's checkpoint models, oldest step first (not the final step's row)."""
        page = self._store.list_checkpoints(job.organization, job.id, after=None, limit=100_000)
        rows = page.items if page is not None else []
        return sorted(
            (c for c in rows if c.fine_tuned_model_checkpoint != job.fine_tuned_model),
            key=lambda c: c.step_number,
        )

    def fine_tuned(self, organization: str, name: str) -> FineTuned | None:
        """The organization's live fine-tuned or checkpoint model of that name, if any."""
        if not name.startswith("ft:"):
            return None
        match = _CHECKPOINT.match(name)
        parent = match.group("model") if match else name
        job = self._store.job_for_model(organization, parent)
        if job is None or job.status != Status.SUCCEEDED:
            return None
        checkpoint = None
        if match is not None:
            checkpoint = next(
                (c for c in self._checkpoints(job) if c.fine_tuned_model_checkpoint == name), None
            )
            if checkpoint is None:
                return None
        if self._store.deleted_models(organization, [name, parent]):
            return None
        return FineTuned(name, job, checkpoint)

    def list_models(self, organization: str) -> list[dict[str, Any]]:
        """Base models first, then each fine-tuned model (oldest finish first) followed by its
        checkpoint models."""
        data: list[dict[str, Any]] = [model_object(m) for m in self.available()]
        deleted = self._store.deleted_models(organization)
        for job in self._store.succeeded_jobs(organization):
            assert job.fine_tuned_model is not None
            if job.fine_tuned_model in deleted:
                continue
            data.append(_object(FineTuned(job.fine_tuned_model, job, None)))
            for c in self._checkpoints(job):
                if c.fine_tuned_model_checkpoint not in deleted:
                    data.append(_object(FineTuned(c.fine_tuned_model_checkpoint, job, c)))
        return data

    def retrieve(self, organization: str, name: str) -> dict[str, Any]:
        found = self.fine_tuned(organization, name)
        if found is not None:
            return _object(found)
        for m in self.available():
            if m.name == name:
                return model_object(m)
        raise UnknownModel(name)

    def delete(self, organization: str, name: str) -> dict[str, Any]:
        found = self.fine_tuned(organization, name)
        if found is None:
            if self._is_base(name):
                raise ModelNotDeletable(name)
            raise UnknownModel(name)
        job = found.job
        checkpoints = self._checkpoints(job)
        if found.checkpoint is None:
            names = [name, *(c.fine_tuned_model_checkpoint for c in checkpoints)]
            keys = [c.path for c in checkpoints]
            model_key = _model_key(self._blobs, job)
            if model_key is not None:
                keys.append(model_key)
            # Everything under the job's directory is training output of this finished job.
            keys.append(f"jobs/{job.id}")
        else:
            names, keys = [name], [found.checkpoint.path]
        # The rows first: from here on the model is gone, whatever happens to the files.
        if name not in self._store.delete_models(organization, job.id, names, int(time.time())):
            raise UnknownModel(name)  # deleted by a concurrent request
        # A tree inside another one goes with it (one listing and delete on S3, not one each).
        for key in keys:
            if not any(key.startswith(k + "/") for k in keys):
                self._remove(key)
        return MODEL_DELETED.make(id=name, deleted=True)

    def _is_base(self, name: str) -> bool:
        if name.startswith("ft:"):
            return False
        if any(m.name == name for m in self.available()):
            return True
        try:
            self.registry.resolve(name)
        except InvalidValue:
            return False
        return True

    def _remove(self, key: str) -> None:
        """Delete a model tree from the blob store and its copies cached here. A store that
        cannot be reached leaves garbage (logged); the model is gone already."""
        try:
            self._blobs.blobs.delete_prefix(tree_prefix(key))
        except ValueError:
            return  # a row naming something outside the store: not ours to delete
        except (BlobError, BlobUnavailable) as exc:
            log.warning("could not delete the weights under %s: %s", key, exc)
        self._blobs.evict(key)

    # -- inference ---------------------------------------------------------------------------
    def served(self, organization: str, name: str) -> ServedModel:
        """What inference loads for ``name`` as asked by ``organization``.

        Base models (built-ins, aliases, HF cache ids, local directories and GGUF files, as job
        creation accepts them) are ``kind="base"``; fine-tuned and checkpoint models carry their
        job's adapter kind, base source and weights directory, and ``chat=False`` when the job
        trained on prompt/completion rows. Raises :class:`ModelNotFound` (404
        ``model_not_found``, ``param`` null) for anything else: unknown, another
        organization's, deleted, or a job that has not succeeded."""
        found = self.fine_tuned(organization, name)
        if found is not None:
            return _served(found, self._blobs, name)
        try:
            resolved = self.registry.resolve(name)
        except InvalidValue:
            raise ModelNotFound(name) from None
        return ServedModel(name=name, kind="base", base_source=resolved.source)

    def judge(self, organization: str) -> Callable[[str], bool]:
        """Whether a model grader of ``organization`` may name a model as its judge: it must be
        served to it (:meth:`served`, whose 404 propagates), and True if it chats (a
        prompt/completion fine-tune answers False: it is served on /completions only)."""
        return lambda name: self.served(organization, name).chat


def _object(found: FineTuned) -> dict[str, Any]:
    job = found.job
    if found.checkpoint is not None:
        created = found.checkpoint.created_at
    else:
        created = job.finished_at if job.finished_at is not None else job.created_at
    return model(found.name, created, job.organization)


def _model_key(blobs: BlobCache, job: JobRecord) -> str | None:
    """The key of the job's final model (``model_path`` is where it lies: a path on a
    directory store, an s3:// URL on S3)."""
    model_path = job.extensions.get("model_path")
    return blobs.blobs.key_of(model_path) if isinstance(model_path, str) else None


def _served(found: FineTuned, blobs: BlobCache, name: str) -> ServedModel:
    """``weights`` is where the model lies: a local directory on a directory store, a blob
    location on a remote one, which the inference process fetches through its cache."""
    job = found.job
    adapter = job.extensions.get("adapter", "lora")
    kind: ModelKind = "full" if adapter == "full" else "lora"
    if found.checkpoint is not None:
        weights = blobs.blobs.location(found.checkpoint.path)
    else:
        model_path = job.extensions.get("model_path")
        if not isinstance(model_path, str):
            raise ModelNotFound(name)
        weights = model_path
    return ServedModel(
        name=name,
        kind=kind,
        base_source=job.model_source,
        weights=weights,
        chat=job.extensions.get("training_format") != "prompt_completion",
    )
