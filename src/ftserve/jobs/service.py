"""Job lifecycle as users drive it: create, read, list, cancel, pause, resume.

Each state change is one ``Store.update_job`` call guarded by the statuses the state machine
allows, with its event in the same transaction; when the guard fails, the job is read again to
say why (or that it does not exist).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..blobs import BlobError, BlobUnavailable
from ..errors import InvalidValue, JobNotFound, StateConflict
from ..events import messages
from ..files.service import FileService
from ..files.validation import first_format
from ..graders.policy import Judge, check_judges
from ..ids import job_id as new_job_id
from ..models.registry import ModelRegistry
from ..store.protocol import Store, UnknownCursor
from ..store.records import JobChanges, JobRecord, NewEvent, Page
from .method import MethodType
from .schemas import parse_create
from .states import Action, Status, refusal, sources
from .validator import format_mismatch

# More than the number of transitions a job can make on its own before a user's one lands.
_TRANSITION_ATTEMPTS = 8


class JobService:
    def __init__(
        self,
        store: Store,
        files: FileService,
        models: ModelRegistry,
        on_created: Callable[[str], None] = lambda _id: None,
        *,
        judges: Callable[[str], Judge] | None = None,
        python_graders: bool = True,
    ) -> None:
        """``judges(organization)``: the chat models a grader of that organization may use as
        its judge (None: no check, as in tests that build no model service)."""
        # Workers and training processes learn of queued, cancelled and paused jobs through
        # the store itself: its wake-up seam and the claim fence on every training write.
        self._store = store
        self._files = files
        self._models = models
        self._on_created = on_created
        self._judges = judges
        self._python_graders = python_graders

    def create(self, organization: str, body: dict[str, Any]) -> JobRecord:
        req = parse_create(body, python_graders=self._python_graders)
        model = self._models.resolve(req.model)
        if req.method.grader is not None and self._judges is not None:
            check_judges(
                req.method.grader, "method.reinforcement.grader", self._judges(organization)
            )
        self._check_file(organization, req.training_file, "training_file", req.method.type)
        if req.validation_file is not None:
            self._check_file(organization, req.validation_file, "validation_file", req.method.type)
        jid = new_job_id()
        job = JobRecord(
            id=jid,
            organization=organization,
            model=model.name,
            model_source=model.source,
            status=Status.VALIDATING_FILES,
            created_at=int(time.time()),
            training_file=req.training_file,
            validation_file=req.validation_file,
            hyperparameters=req.hyperparameters,
            method=req.method,
            seed=req.seed,
            suffix=req.suffix,
            metadata=req.metadata,
            integrations=req.integrations,
            # `model` is what was asked for (an alias stays an alias, as OpenAI echoes it);
            # the model actually trained is shown here.
            extensions={**req.extensions, "base_model": model.trained},
            # What the queue is claimed against (0: "auto", resolved by the worker that takes it).
            devices=0
            if req.extensions.get("devices") == "auto"
            else int(req.extensions["devices"]),
        )
        self._store.create_job(
            job,
            [messages.created(jid), messages.validating(req.training_file, req.validation_file)],
        )
        self._on_created(jid)
        return job

    def _check_file(self, organization: str, file_id: str, param: str, method: MethodType) -> None:
        record = self._store.get_file(organization, file_id, int(time.time()))
        if record is None:
            raise InvalidValue(
                f"invalid {param}: {file_id}. No such file exists; upload it first with "
                "POST /v1/files (purpose 'fine-tune').",
                param=param,
                code="invalid_file",
            )
        if record.purpose != "fine-tune":
            raise InvalidValue(
                f"invalid {param}: {file_id} has purpose '{record.purpose}'; fine-tuning needs a "
                "file uploaded with purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )
        # Every fine-tune upload was checked whole, so its first example tells its format: a
        # file of the wrong kind for the method is refused now rather than failing the job.
        try:
            found = first_format(self._files.blob_path(record))
        except (BlobError, BlobUnavailable, OSError):
            return  # unreadable now: the validator reads it again, and waits for the store
        mismatch = None if found is None else format_mismatch(method, found)
        if mismatch is not None:
            raise InvalidValue(
                f"invalid {param}: {file_id}. {mismatch}", param=param, code="invalid_file_format"
            )

    def get(self, organization: str, job_id: str) -> JobRecord:
        job = self._store.get_job(job_id, organization)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def list(
        self,
        organization: str,
        *,
        after: str | None,
        limit: int,
        metadata: Mapping[str, str] | None,
    ) -> Page[JobRecord]:
        try:
            return self._store.list_jobs(organization, after=after, limit=limit, metadata=metadata)
        except UnknownCursor:
            raise InvalidValue(
                f"Invalid 'after': no fine-tuning job {after!r} to page from.", param="after"
            ) from None

    def _transition(
        self,
        organization: str,
        job_id: str,
        action: Action,
        changes: Callable[[JobRecord], JobChanges],
        event: NewEvent,
    ) -> JobRecord:
        # Ownership first: another organization's job does not exist for this caller.
        current = self.get(organization, job_id)
        # The status can move between our read and our write (the validator queues the job, a
        # worker claims it): the user's request is still allowed from the new status, so try
        # again from what the job is now. Each retry follows a real transition elsewhere, and a
        # job has few states, so this ends quickly.
        for _ in range(_TRANSITION_ATTEMPTS):
            if current.status not in sources(action):
                raise StateConflict(refusal(action, current.status, job_id))
            updated = self._store.update_job(
                job_id, expect=[current.status], changes=changes(current), events=[event]
            )
            if updated is not None:
                return updated
            current = self.get(organization, job_id)
        raise StateConflict(refusal(action, current.status, job_id))

    def cancel(self, organization: str, job_id: str) -> JobRecord:
        return self._transition(
            organization,
            job_id,
            Action.CANCEL,
            lambda j: {
                "status": Status.CANCELLED,
                "finished_at": int(time.time()),
                "estimated_finish": None,
            },
            messages.cancelled(),
        )

    def pause(self, organization: str, job_id: str) -> JobRecord:
        return self._transition(
            organization,
            job_id,
            Action.PAUSE,
            lambda j: {
                "status": Status.PAUSED,
                "estimated_finish": None,
            },
            messages.paused(),
        )

    def resume(self, organization: str, job_id: str) -> JobRecord:
        return self._transition(
            organization,
            job_id,
            Action.RESUME,
            lambda j: {"status": Status.QUEUED},
            messages.resumed(),
        )
