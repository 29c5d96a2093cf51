"""The ``validating_files`` step: check a new job's files, then queue it or fail it.

Runs on a background thread of the API process (the check reads whole files). Jobs left in
``validating_files`` by a crash are picked up again at start, and the status guard on the final
update makes a second validation of the same job harmless.

A file that cannot be read *now* (the blob store or the database unreachable) fails nothing:
the job stays ``validating_files``, says once in its log that it is waiting, and is checked
again with a growing delay until the store answers (or the user cancels it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time

from ..blobs.protocol import BlobUnavailable
from ..errors import StoreError, StoreUnavailable
from ..events import messages
from ..files.service import FileService
from ..files.validation import FileAnalysis, FileFormat, JsonlError, analyse_file
from ..store.protocol import Store
from ..store.records import JobRecord
from .method import MethodType
from .states import Status

log = logging.getLogger("ftserve.validator")

_FORMATS_FOR: dict[str, tuple[FileFormat, ...]] = {
    "supervised": ("chat", "prompt_completion"),
    "dpo": ("preference",),
    "reinforcement": ("reinforcement",),
}
_FORMAT_WORDS = {
    "chat": "chat (messages ending with the assistant's answer)",
    "prompt_completion": "prompt/completion",
    "preference": "preference (input, preferred_output, non_preferred_output)",
    "reinforcement": "reinforcement (messages ending with a user message, plus the grader's item)",
}


# Checks of a job whose files cannot be read now: 1 s, 2 s, 4 s, … then once a minute.
_RETRY_FIRST_SECONDS = 1.0
_RETRY_MAX_SECONDS = 60.0


def format_mismatch(method: MethodType, found: FileFormat) -> str | None:
    """Why a file in ``found`` format cannot train a ``method`` job; None if it can."""
    if found in _FORMATS_FOR[method]:
        return None
    wanted = " or ".join(_FORMAT_WORDS[f] for f in _FORMATS_FOR[method])
    return (
        f"A {method} job needs examples in the {wanted} format, but the file is in the "
        f"{_FORMAT_WORDS[found]} format."
    )


class FileCheckFailed(Exception):
    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class JobValidator:
    def __init__(
        self,
        store: Store,
        files: FileService,
        min_examples: int,
    ) -> None:
        self._store = store
        self._files = files
        self._min_examples = min_examples
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._waits: dict[str, int] = {}  # job id -> checks that met an unreachable store
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ftserve-validator", daemon=True)
        self._thread.start()
        for job in self._store.jobs_with_status(Status.VALIDATING_FILES, 10_000):
            self._queue.put(job.id)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self.validate(job_id)
                self._waits.pop(job_id, None)
            except (BlobUnavailable, StoreUnavailable) as exc:
                self._check_again_later(job_id, exc)
            except Exception:
                log.exception("validating files of %s failed unexpectedly", job_id)

    def _check_again_later(self, job_id: str, exc: Exception) -> None:
        tries = self._waits[job_id] = self._waits.get(job_id, 0) + 1
        delay = min(_RETRY_MAX_SECONDS, _RETRY_FIRST_SECONDS * 2 ** (tries - 1))
        why = exc.detail if isinstance(exc, BlobUnavailable) else str(exc)
        log.warning("job %s: files unreadable now (%s); checking again in %gs", job_id, why, delay)
        if tries == 1:
            # Keyed: one such event per job, however often it waits. When the database is what
            # is down, the log line above is all there can be.
            with contextlib.suppress(StoreError):
                self._store.update_job(
                    job_id,
                    expect=[Status.VALIDATING_FILES],
                    changes={},
                    events=[messages.files_unreachable()],
                )
        timer = threading.Timer(delay, self._requeue, args=(job_id,))
        timer.daemon = True
        timer.start()

    def _requeue(self, job_id: str) -> None:
        if not self._stopping.is_set():
            self._queue.put(job_id)

    def _check(self, job: JobRecord, file_id: str, param: str) -> FileAnalysis:
        which = "training" if param == "training_file" else "validation"
        record = self._store.get_file(job.organization, file_id, int(time.time()))
        if record is None:
            raise FileCheckFailed(
                "invalid_file", f"The {which} file {file_id} no longer exists.", param
            )
        try:
            analysis = analyse_file(self._files.blob_path(record))
        except JsonlError as exc:
            raise FileCheckFailed(
                "invalid_file_format",
                f"The job failed due to a file format error in the {which} file. "
                f"Invalid file format. {_example_words(exc)}",
                param,
            ) from None
        except OSError as exc:
            raise FileCheckFailed(
                "invalid_file", f"The {which} file {file_id} could not be read: {exc}", param
            ) from None
        mismatch = format_mismatch(job.method.type, analysis.format)
        if mismatch is not None:
            raise FileCheckFailed(
                "invalid_file_format",
                f"The job failed due to a file format error in the {which} file. {mismatch}",
                param,
            )
        return analysis

    def validate(self, job_id: str) -> None:
        job = self._store.get_job(job_id)
        if job is None or job.status != Status.VALIDATING_FILES:
            return
        try:
            training = self._check(job, job.training_file, "training_file")
            if training.n_examples < self._min_examples:
                raise FileCheckFailed(
                    "invalid_n_examples",
                    f"Training file has {training.n_examples} example(s), but must have at "
                    f"least {self._min_examples} examples",
                    "training_file",
                )
            if job.validation_file is not None:
                self._check(job, job.validation_file, "validation_file")
        except FileCheckFailed as failure:
            self._store.update_job(
                job_id,
                expect=[Status.VALIDATING_FILES],
                changes={
                    "status": Status.FAILED,
                    "finished_at": int(time.time()),
                    "error": {
                        "code": failure.code,
                        "message": failure.message,
                        "param": failure.param,
                    },
                },
                events=[messages.failed(failure.message, failure.code, failure.param)],
            )
            return
        # Workers learn of the queued job through the store's wake-up seam. The training
        # file's format rides along: a prompt/completion model is served on /completions only.
        self._store.update_job(
            job_id,
            expect=[Status.VALIDATING_FILES],
            changes={
                "status": Status.QUEUED,
                "extensions": {**job.extensions, "training_format": training.format},
            },
            events=[messages.files_validated()],
        )


def _example_words(exc: JsonlError) -> str:
    if exc.example:
        return f"Example {exc.example} (line {exc.line}): {exc.reason}."
    return f"{exc.reason[0].upper()}{exc.reason[1:]}."
