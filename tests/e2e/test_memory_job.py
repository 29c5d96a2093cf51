"""The memory options through the official SDK against a real server: a job asks for them in
``ftserve``, the worker's child trains with them (QLoRA where bitsandbytes is installed), and
the job echoes what "auto" became."""

from __future__ import annotations

import importlib.util

from tests.conftest import Server, chat_rows, upload
from tests.e2e.conftest import wait_final

NF4 = importlib.util.find_spec("bitsandbytes") is not None


def test_memory_options_train_and_echo_what_auto_became(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(12))
    asked = {"max_seq_len": 256, "quantization": "nf4" if NF4 else None}
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        extra_body={"ftserve": asked},
    )
    created = job.model_extra["ftserve"]  # type: ignore[index]
    assert created["gradient_checkpointing"] == "auto"
    assert created["max_tokens_per_micro_batch"] == "auto"
    assert wait_final(client, job.id) == "succeeded"
    done = client.fine_tuning.jobs.retrieve(job.id).model_extra["ftserve"]  # type: ignore[index]
    # A CPU worker: no checkpointing, the default budget; the asked values as they were.
    assert done["gradient_checkpointing"] is False
    assert done["max_tokens_per_micro_batch"] == 16384
    assert (done["max_seq_len"], done["quantization"]) == (256, asked["quantization"])
    assert done["model_path"]
