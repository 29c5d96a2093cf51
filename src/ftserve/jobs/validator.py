"""The ``validating_files`` step: check a new job's files, then queue it or fail it.

Runs on a background thread of the API process (the check reads whole files). Jobs left in
``validating_files`` by a crash are picked up again at start, and the status guard on the final
update makes a second validation of the same job harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from ..events import messages
from ..files.service import FileService
from ..files.validation import FileAnalysis, JsonlError, analyse_file
from ..store.protocol import Store
from ..store.records import JobRecord
from .states import Status

log = logging.getLogger("ftserve.validator")

_FORMATS_FOR = {"supervised": ("chat", "prompt_completion"), "dpo": ("preference",)}
_FORMAT_WORDS = {
    "chat": "chat (messages)",
    "prompt_completion": "prompt/completion",
    "preference": "preference (input, preferred_output, non_preferred_output)",
}


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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ftserve-validator", daemon=True)
        self._thread.start()
        for job in self._store.jobs_with_status(Status.VALIDATING_FILES, 10_000):
            self._queue.put(job.id)

    def stop(self) -> None:
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
            except Exception:
                log.exception("validating files of %s failed unexpectedly", job_id)

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
        method = str(job.method.get("type", "supervised"))
        if analysis.format not in _FORMATS_FOR[method]:
            wanted = " or ".join(_FORMAT_WORDS[f] for f in _FORMATS_FOR[method])
            raise FileCheckFailed(
                "invalid_file_format",
                f"The job failed due to a file format error in the {which} file. A {method} job "
                f"needs examples in the {wanted} format, but the file is in the "
                f"{_FORMAT_WORDS[analysis.format]} format.",
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
