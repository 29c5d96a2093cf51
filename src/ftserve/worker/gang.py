"""The leader's side of a job on several workers (``ftserve.nodes``), in its training process:
open the claim's gang where the other workers can find it, wait for them, and give the job
back to the queue when they do not come in time.

The leader is the worker that claimed the job through the normal claim; it keeps the claim,
the lease and every record. The others take node ranks in the store (``Store.join_gang``) and
run their ranks with no hooks (follower.py)."""

from __future__ import annotations

import contextlib
import logging
import time

from ..config import Settings
from ..events import messages
from ..jobs.states import Status
from ..store.protocol import Store, WriteRefused
from ..store.records import Claim, NewEvent
from ..training.distributed import Rendezvous
from ..training.spec import TrainingStopped
from .lease import RELEASED

log = logging.getLogger("ftserve.child")

POLL_SECONDS = 0.1  # how often the waiting leader looks at who joined (and at a cancel)
TELL_AFTER_SECONDS = 1.0  # workers that join within this are "at once": nothing to say
GANG_WAITING = "gang-waiting"  # the key of the event that says the job waits for workers


class GangNotAssembled(Exception):
    """The other workers did not all join within ``FTSERVE_GANG_WAIT_SECONDS``."""


def leading(store: Store, claim: Claim, settings: Settings, devices: int, nodes: int) -> Rendezvous:
    """The leader's rendezvous: its ``assemble`` publishes the c10d store's port for the claim
    and returns once ``nodes - 1`` other workers joined."""

    def assemble(port: int) -> None:
        address = settings.rendezvous_address
        if not store.open_gang(claim, nodes, devices, address, port, time.time()):
            raise _stopped(store, claim)
        began = time.monotonic()
        told = False
        while True:
            missing = nodes - 1 - len(store.gang_members(claim))
            if missing <= 0:
                return
            job = store.get_job(claim.job_id)
            if job is None or job.claim_token != claim.token or job.status != Status.RUNNING:
                raise _stopped(store, claim)
            waited = time.monotonic() - began
            if not told and waited > TELL_AFTER_SECONDS:
                told = True
                with contextlib.suppress(WriteRefused):  # stopped meanwhile: the loop sees it
                    store.write_claimed(claim, events=[_waiting(missing, nodes, settings)])
            if waited > settings.gang_wait_seconds:
                raise GangNotAssembled(
                    f"{missing} of the {nodes - 1} other workers this job needs (ftserve.nodes) "
                    f"did not join within {settings.gang_wait_seconds:g} s"
                )
            time.sleep(POLL_SECONDS)

    return Rendezvous(0, nodes, settings.rendezvous_address, assemble=assemble)


def _stopped(store: Store, claim: Claim) -> TrainingStopped:
    """Paused or cancelled (or the claim lost) before the first step: nothing to save."""
    job = store.get_job(claim.job_id)
    return TrainingStopped("pause" if job and job.status == Status.PAUSED else "cancel", 0)


def _waiting(missing: int, nodes: int, settings: Settings) -> NewEvent:
    return messages.make_event(
        f"Waiting for {missing} more worker(s) to join this job (ftserve.nodes={nodes}), each "
        f"with the job's devices free; it goes back to the queue if they have not joined within "
        f"{settings.gang_wait_seconds:g} s (FTSERVE_GANG_WAIT_SECONDS)",
        key=GANG_WAITING,
    )


def requeue_unassembled(store: Store, claim: Claim, attempts: int, reason: str) -> None:
    """Give the job back to the queue: nothing was trained, so the attempt does not count
    (a job waiting for machines must not fail for it)."""
    log.warning("job %s: %s; requeued", claim.job_id, reason)
    with contextlib.suppress(WriteRefused):  # cancelled meanwhile: the cancel stands
        store.write_claimed(
            claim,
            changes={
                "status": Status.QUEUED,
                **RELEASED,
                "estimated_finish": None,
                "attempts": max(attempts - 1, 0),
            },
            events=[messages.requeued(reason)],
        )
    store.close_gang(claim)
