"""`"ftserve": {"fsdp": true}` through the server: refused (400 naming it) where it cannot apply,
and a full fine-tune on two CPU processes trains sharded, echoes what it resolved and ends with a
fine-tuned model the server answers with."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, chat_rows, upload
from tests.e2e.conftest import wait_final


def _create(client: openai.OpenAI, file_id: str, ftserve: dict[str, Any]) -> Any:
    return client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=file_id,
        seed=5,
        hyperparameters={"n_epochs": 1, "batch_size": 3},
        extra_body={"ftserve": ftserve},
    )


def test_a_sharded_full_fine_tune(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "1", "FTSERVE_CONCURRENCY": "2"})
    srv.start()
    try:
        client = srv.client()
        file_id = upload(client, chat_rows(12))
        for refused in ({"fsdp": True, "devices": 2}, {"fsdp": True, "adapter": "full"}):
            with pytest.raises(openai.BadRequestError) as info:
                _create(client, file_id, refused)
            assert info.value.body["param"] == "ftserve.fsdp"  # type: ignore[index]

        job = _create(client, file_id, {"fsdp": True, "adapter": "full", "devices": 2})
        assert job.model_extra is not None and job.model_extra["ftserve"]["fsdp"] is True
        status = wait_final(client, job.id)
        assert status == "succeeded", client.fine_tuning.jobs.retrieve(job.id).error
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.model_extra is not None and done.model_extra["ftserve"]["fsdp"] is True
        assert done.fine_tuned_model is not None and done.trained_tokens
        reply = client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
        )
        assert reply.choices[0].message.content is not None
    finally:
        srv.stop(signal.SIGKILL)
