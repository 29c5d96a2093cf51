"""Jobs that really train, end to end through the official SDK against a real server.

The tests of the store's part (the event log and rows of a job, cancel, pause/resume, crashes
and their recovery, the pickup wake-up) also run on PostgreSQL (``both_backends``); those of
the model's (determinism, validation metrics, other architectures, full and DPO) only on SQLite,
where they are the same tests of the same trainer."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, chat_rows, upload, wait_status
from tests.e2e.conftest import (
    metric_steps,
    training_children,
    wait_final,
    wait_gone,
    wait_steps,
)

STEP_RE = re.compile(r"^Step (\d+)/(\d+): training loss=(\d+\.\d\d)")


def losses(client: openai.OpenAI, job_id: str) -> dict[int, float]:
    return {
        int(e.data["step"]): float(e.data["train_loss"])
        for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)
        if e.type == "metrics" and isinstance(e.data, dict)
    }


@pytest.mark.both_backends
def test_tiny_model_job_reads_like_openai(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(50))
    t0 = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=7, suffix="demo"
    )
    assert wait_final(client, job.id) == "succeeded"
    elapsed = time.monotonic() - t0
    assert elapsed < 60, f"the demo job took {elapsed:.1f}s"
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.fine_tuned_model == f"ft:ftserve-tiny:personal:demo:{job.id[-8:]}"
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at and job.error is None and len(job.result_files) == 1
    hp = job.hyperparameters
    assert (hp.n_epochs, hp.batch_size) == (3, 1) and isinstance(hp.learning_rate_multiplier, float)

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=7))  # SDK pages newest first
    texts = [e.message for e in reversed(events)]  # chronological
    assert texts[:4] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {fid}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert texts[-2:] == [
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]
    started = next(e for e in events if e.message == "Fine-tuning job started")
    assert started.data is None
    metrics = [e for e in reversed(events) if e.type == "metrics"]
    total = 150  # 50 examples x 3 epochs at batch size 1
    assert [int(STEP_RE.match(e.message).group(1)) for e in metrics] == list(range(1, total + 1))  # type: ignore[union-attr]
    for e in metrics:
        assert isinstance(e.data, dict)
        assert set(e.data) == {"step", "total_steps", "train_loss", "train_mean_token_accuracy"}
        assert e.data["total_steps"] == total
        assert e.message.endswith(f"loss={e.data['train_loss']:.2f}")
    first = sum(e.data["train_loss"] for e in metrics[:10]) / 10  # type: ignore[index]
    last = sum(e.data["train_loss"] for e in metrics[-10:]) / 10  # type: ignore[index]
    assert last < first * 0.9, (first, last)
    ckpt_msgs = [t for t in texts if t.startswith("Checkpoint created at step")]
    assert ckpt_msgs == [
        f"Checkpoint created at step 50 with Snapshot ID: {job.fine_tuned_model}:ckpt-step-50",
        f"Checkpoint created at step 100 with Snapshot ID: {job.fine_tuned_model}:ckpt-step-100",
        f"Checkpoint created at step 150 with Snapshot ID: {job.fine_tuned_model}",
    ]

    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in ckpts.data] == [150, 100, 50]
    assert ckpts.data[0].fine_tuned_model_checkpoint == job.fine_tuned_model
    assert all(c.id.startswith("ftckpt_") and c.metrics.train_loss is not None for c in ckpts.data)
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)] == [
        150,
        100,
        50,
    ]

    result = client.files.retrieve(job.result_files[0])
    assert result.purpose == "fine-tune-results"
    rows = list(csv.reader(io.StringIO(client.files.content(result.id).text)))
    assert rows[0] == [
        "step",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
    ]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, total + 1))

    # The adapter is a real PEFT adapter on disk.
    adapter = Path(job.model_extra["ftserve"]["model_path"])  # type: ignore[index]
    assert (adapter / "adapter_config.json").is_file()


def test_same_seed_same_losses(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(12))
    hp = {"n_epochs": 2, "batch_size": 2}
    a = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=3, hyperparameters=hp
    )
    b = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=3, hyperparameters=hp
    )
    c = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=4, hyperparameters=hp
    )
    for j in (a, b, c):
        assert wait_final(client, j.id) == "succeeded"
    la, lb, lc = losses(client, a.id), losses(client, b.id), losses(client, c.id)
    assert la == lb and len(la) == 12
    assert la != lc


def test_validation_file_metrics(trainer_server: Server) -> None:
    client = trainer_server.client()
    t, v = upload(client, chat_rows(20)), upload(client, chat_rows(6, start=100))
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=t,
        validation_file=v,
        seed=1,
        hyperparameters={"n_epochs": 2, "batch_size": 2},
    )
    assert wait_final(client, job.id) == "succeeded"
    metrics = [
        e for e in client.fine_tuning.jobs.list_events(job.id, limit=1000) if e.type == "metrics"
    ]
    last = metrics[0]
    assert isinstance(last.data, dict)
    assert "full validation loss=" in last.message
    assert {"full_valid_loss", "full_valid_mean_token_accuracy"} <= set(last.data)
    with_valid = [e for e in metrics if isinstance(e.data, dict) and "valid_loss" in e.data]
    assert with_valid and all(", validation loss=" in e.message for e in with_valid)
    csv_text = client.files.content(client.fine_tuning.jobs.retrieve(job.id).result_files[0]).text
    assert any(row.split(",")[3] for row in csv_text.splitlines()[1:])


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_local_hugging_face_model_by_path(
    trainer_server: Server, which: str, llama_dir: Path, gpt2_dir: Path
) -> None:
    client = trainer_server.client()
    path = llama_dir if which == "llama" else gpt2_dir
    fid = upload(client, chat_rows(10))
    job = client.fine_tuning.jobs.create(
        model=str(path), training_file=fid, seed=0, hyperparameters={"n_epochs": 1, "batch_size": 2}
    )
    assert job.model == str(path.resolve())
    assert wait_final(client, job.id) == "succeeded", client.fine_tuning.jobs.retrieve(job.id).error
    name = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert name == f"ft:{path.name}:personal::{job.id[-8:]}"


def test_full_fine_tuning_and_dpo(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(10))
    full = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        seed=0,
        hyperparameters={"n_epochs": 1},
        extra_body={"ftserve": {"adapter": "full"}},
    )
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"Say hi {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"Hi {i}!"}],
            "non_preferred_output": [{"role": "assistant", "content": "No."}],
        }
        for i in range(10)
    ]
    dpo = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, rows),
        seed=0,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 1}}},
    )
    assert wait_final(client, full.id) == "succeeded"
    path = Path(client.fine_tuning.jobs.retrieve(full.id).model_extra["ftserve"]["model_path"])  # type: ignore[index]
    assert (path / "config.json").is_file() and not (path / "adapter_config.json").exists()
    assert wait_final(client, dpo.id) == "succeeded", client.fine_tuning.jobs.retrieve(dpo.id).error
    done = client.fine_tuning.jobs.retrieve(dpo.id)
    assert done.method and done.method.dpo and done.method.dpo.hyperparameters
    assert done.method.dpo.hyperparameters.beta == 0.1
    assert metric_steps(client, dpo.id)


@pytest.mark.both_backends
def test_cancel_stops_within_two_seconds(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(50))
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, hyperparameters={"n_epochs": 50}
    )
    wait_steps(client, job.id, 5)
    assert trainer_server.proc is not None
    children = training_children(trainer_server.proc.pid)
    assert children, "no training process to watch"
    t0 = time.monotonic()
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    store = trainer_server.open_store()
    try:
        while store.get_job(job.id).lease_owner is not None:  # type: ignore[union-attr]
            assert time.monotonic() - t0 < 2.0, "training still running 2 s after cancel"
            time.sleep(0.02)
    finally:
        store.close()
    stopped_at = len(metric_steps(client, job.id))
    wait_gone(children)  # then nothing can log another step
    assert len(metric_steps(client, job.id)) == stopped_at
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


@pytest.mark.both_backends
def test_pause_resume_gives_the_same_losses(trainer_server: Server) -> None:
    client = trainer_server.client(strict=False)  # the SDK's strict status Literal lacks "paused"
    fid = upload(client, chat_rows(30))
    hp = {"n_epochs": 10, "batch_size": 1}
    straight = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=11, hyperparameters=hp
    )
    assert wait_final(client, straight.id) == "succeeded"
    paused = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, seed=11, hyperparameters=hp
    )
    wait_steps(client, paused.id, 40)
    assert client.fine_tuning.jobs.pause(paused.id).status == "paused"
    store = trainer_server.open_store()
    try:
        deadline = time.monotonic() + 30
        while store.get_job(paused.id).lease_owner is not None:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        store.close()
    at_pause = len(metric_steps(client, paused.id))
    assert 40 <= at_pause < 300
    # The step that finished after the pause is kept in the pause checkpoint, unlogged.
    newest = client.fine_tuning.jobs.checkpoints.list(paused.id).data[0].step_number
    assert newest in (at_pause, at_pause + 1)
    assert client.fine_tuning.jobs.resume(paused.id).status == "queued"
    assert wait_final(client, paused.id) == "succeeded"
    assert losses(client, paused.id) == losses(client, straight.id)
    msgs = [e.message for e in client.fine_tuning.jobs.list_events(paused.id, limit=1000)]
    assert msgs.count("Fine-tuning job started") == 1
    assert f"Fine-tuning job resumed from the checkpoint at step {newest}" in msgs


@pytest.mark.both_backends
def test_kill_9_of_the_training_child_resumes(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(40))
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        seed=5,
        hyperparameters={"n_epochs": 8, "batch_size": 1},
    )
    wait_steps(client, job.id, 50)  # past the first epoch checkpoint (step 40)
    assert trainer_server.proc is not None
    children = training_children(trainer_server.proc.pid)
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    assert wait_final(client, job.id) == "succeeded"
    steps = metric_steps(client, job.id)
    assert sorted(steps) == list(range(1, 321)), "a step is missing or was recorded twice"
    msgs = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    assert any(m.startswith("The training process ended unexpectedly (signal 9)") for m in msgs)
    resumed = [
        m for m in msgs if m.startswith("Fine-tuning job resumed from the checkpoint at step")
    ]
    assert len(resumed) == 1 and int(resumed[0].rsplit(" ", 1)[1]) % 40 == 0
    assert msgs.count("Fine-tuning job started") == 1


@pytest.mark.both_backends
def test_kill_9_of_the_whole_server_resumes(own_trainer_server: Server) -> None:
    srv = own_trainer_server
    srv.start()
    client = srv.client()
    fid = upload(client, chat_rows(40))
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        seed=6,
        hyperparameters={"n_epochs": 8, "batch_size": 1},
    )
    wait_steps(client, job.id, 50)
    srv.stop(signal.SIGKILL)
    srv.start()
    client = srv.client()
    assert wait_final(client, job.id) == "succeeded"
    assert sorted(metric_steps(client, job.id)) == list(range(1, 321))
    msgs = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    assert msgs.count("Fine-tuning job started") == 1
    assert msgs.count("The job has successfully completed") == 1


@pytest.mark.both_backends
def test_repeated_crashes_fail_the_job(own_trainer_server: Server) -> None:
    srv = own_trainer_server
    srv.env["FTSERVE_MAX_ATTEMPTS"] = "1"
    srv.start()
    client = srv.client()
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(30)),
        hyperparameters={"n_epochs": 20},
    )
    wait_steps(client, job.id, 3)
    assert srv.proc is not None
    for pid in training_children(srv.proc.pid):
        os.kill(pid, signal.SIGKILL)
    assert wait_final(client, job.id) == "failed"
    err = client.fine_tuning.jobs.retrieve(job.id).error
    assert err is not None and err.code == "training_crashed"
    # The worker survived and takes the next job.
    nxt = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=upload(client, chat_rows(10)),
        hyperparameters={"n_epochs": 1},
    )
    assert wait_final(client, nxt.id) == "succeeded"


@pytest.mark.both_backends
def test_nan_loss_fails_cleanly_and_worker_goes_on(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(10))
    bad = client.fine_tuning.jobs.create(
        model="ftserve-tiny",
        training_file=fid,
        hyperparameters={"learning_rate_multiplier": 1e30, "n_epochs": 3},
    )
    assert wait_final(client, bad.id) == "failed"
    job = client.fine_tuning.jobs.retrieve(bad.id)
    assert job.error is not None and job.error.code == "nan_loss"
    first = next(iter(client.fine_tuning.jobs.list_events(bad.id)))
    assert first.level == "error" and first.message == job.error.message


@pytest.mark.both_backends
def test_pickup_is_quick(trainer_server: Server) -> None:
    client = trainer_server.client()
    fid = upload(client, chat_rows(10))
    job = client.fine_tuning.jobs.create(
        model="ftserve-tiny", training_file=fid, hyperparameters={"n_epochs": 1}
    )
    assert wait_status(client, job.id, {"running", "succeeded"}, timeout=3) in {
        "running",
        "succeeded",
    }
    wait_final(client, job.id)


@pytest.mark.gpu
def test_same_job_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    srv = Server(tmp_path / "data", env={"FTSERVE_WORKERS": "1", "FTSERVE_DEVICE": "cuda"})
    srv.start()
    try:
        client = srv.client()
        job = client.fine_tuning.jobs.create(
            model="ftserve-tiny", training_file=upload(client, chat_rows(50))
        )
        assert wait_final(client, job.id) == "succeeded"
    finally:
        srv.stop()
