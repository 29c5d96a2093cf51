"""One job on several devices: ``spec.devices`` processes joined by torch.distributed.

The training process the worker started is rank 0. It forks the other ranks itself
(``torch.multiprocessing.start_processes``; spawned instead where CUDA is already initialised)
before any model is loaded, and every rank runs the same trainer over the same spec. Why not
torchrun / ``elastic_launch``: they would turn this process into an agent and start every rank
as a grandchild, so rank 0 would need a store connection, a claim and hooks of its own, and
their restart and rendezvous machinery is exactly what ``max_restarts=0`` switches off (the
worker owns retries). Here rank 0 keeps the claim-fenced hooks it already has.

* **Gradients.** Each optimizer step's examples are dealt out: rank ``r`` takes every
  ``world``-th example starting at ``r``, so the global batch (and the data order) is the one a
  single process sees. A rank accumulates its share's gradients locally (the objective's own
  micro-batches, scaled by its own token count), then one synchronising forward/backward pass
  through ``DistributedDataParallel`` (a one-token probe whose loss is multiplied by zero, so it
  adds nothing) lets DDP all-reduce the accumulated gradients, the pattern DDP documents for
  ``no_sync`` accumulation. A comm hook weighs each rank's gradient by its share of the step's
  trained tokens (pairs for DPO) before DDP's sum, so the result is the single-process
  gradient: the mean over every trained token of the step. (The probe gives every rank exactly
  one synchronised backward per step, however many micro-batches or examples it had: a rank
  with no example in a short last batch still takes part.)
* **Control.** Only rank 0 writes (metrics, checkpoints, the final model); after each of its
  hooks it broadcasts the answer, so a cancel or a pause reaches every rank within the step.
* **Failure.** A rank that dies (kill -9, out of memory) ends the whole run: rank 0 watches
  the other ranks and exits with :data:`EXIT_RANK_LOST` (the worker requeues the job, which
  resumes from its last checkpoint); the other ranks die with rank 0 (``PR_SET_PDEATHSIG``).

* **Several workers** (``ftserve.nodes``, :class:`Rendezvous`). Each worker's first process
  starts its worker's other ranks as above; global ranks are ``node_rank * devices + local``.
  The leader's first process (rank 0) opens the c10d ``TCPStore`` and, through the worker's
  ``assemble``, publishes its address in the job's store and waits for the other workers;
  theirs connect to it and call no hooks. A collective that fails because another worker's
  rank went away ends the run with :data:`EXIT_RANK_LOST`, as a local rank's death does.


A full fine-tune may instead be sharded with FSDP2 (``ftserve.training.fsdp``): the same gang,
launch and control, with its own objective wrapper in place of :class:`ShardedObjective`.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import inspect
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket, Store, TCPStore
from torch.multiprocessing.spawn import start_processes

from ftserve.training.data import Example
from ftserve.training.objective import Objective, Outcome
from ftserve.training.spec import (
    CheckpointInfo,
    Control,
    MemoryPlan,
    Metrics,
    ResolvedHyperparameters,
    TrainingFailed,
    TrainingHooks,
    TrainingResult,
    TrainingSpec,
    TrainingStopped,
)

log = logging.getLogger("ftserve.child")

EXIT_RANK_LOST = 75  # rank 0's exit code when another rank died: the run is over, not the job
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)  # a rank stuck this long in a collective
RENDEZVOUS_TIMEOUT = datetime.timedelta(seconds=60)  # the ranks find each other within this
JOIN_SECONDS = 10.0  # how long rank 0 waits for the other ranks to end with it
WATCH_SECONDS = 0.05
_CONTROLS: tuple[Control, ...] = ("continue", "pause", "cancel")


@dataclass(frozen=True)
class Rank:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Rendezvous:
    """This process's place in a job trained by several workers (``ftserve.nodes``): its
    worker's node rank, how many workers, and where the ranks meet (the leader's c10d
    ``TCPStore``). The leader (node 0) opens the store on ``address`` and a free port and hands
    the port to ``assemble``, which publishes it and returns once every worker has joined (or
    raises: the job was stopped, or the gang did not assemble in time); the others connect to
    ``address:port``."""

    node_rank: int
    nodes: int
    address: str
    port: int = 0
    assemble: Callable[[int], None] | None = None

    @property
    def leads(self) -> bool:
        return self.node_rank == 0


_current: Rank | None = None


def current() -> Rank | None:
    """This process's place in a job on several devices; None in a one-device job."""
    return _current


def is_main() -> bool:
    """Whether this process writes (rank 0, or the only process)."""
    return _current is None or _current.main


# -- the objective over the group ----------------------------------------------------------------


def _weight(item: Any) -> int:
    """What a step's loss is the mean over: trained tokens (supervised), pairs (DPO)."""
    return item.n_targets if isinstance(item, Example) else 1


class _Share:
    """The comm hook's state: this rank's share of the current step's weight."""

    def __init__(self) -> None:
        self.fraction = 1.0


def _weighted_sum(state: _Share, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's all-reduce with each rank's gradient weighed by its share of the step (DDP's
    default divides by the number of ranks, which is only right for equal shares)."""
    tensor = bucket.buffer()
    tensor.mul_(state.fraction)
    work = dist.all_reduce(tensor, async_op=True)
    assert work is not None
    reduced: torch.futures.Future[torch.Tensor] = work.get_future().then(lambda fut: fut.value()[0])
    return reduced


# DDP checks a hook's annotations as objects; this module's are strings (PEP 563).
_weighted_sum.__annotations__ = {
    "state": _Share,
    "bucket": GradBucket,
    "return": torch.futures.Future[torch.Tensor],
}


class ShardedObjective:
    """An objective whose steps are shared by every rank of the group."""

    def __init__(
        self,
        inner: Objective,
        model: Any,
        rank: Rank,
        *,
        probe_id: int,
        autocast: Any,
    ) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.inner = inner
        self.rank = rank
        self.autocast = autocast
        self.share = _Share()
        device_ids = [rank.device.index] if rank.device.type == "cuda" else None
        # Buffers (rotary tables) are constants: nothing to broadcast at each forward. torch
        # 2.13 renamed the flag (2.11, on the GPU machines, has only the old name).
        names = inspect.signature(DistributedDataParallel.__init__).parameters
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in names
            else {"broadcast_buffers": False}
        )
        self.ddp = DistributedDataParallel(model, device_ids=device_ids, **no_buffer_sync)  # type: ignore[arg-type]
        self.ddp.register_comm_hook(self.share, _weighted_sum)
        self.probe = torch.tensor([[probe_id]], dtype=torch.long, device=rank.device)

    def train_step(self, items: Sequence[Any]) -> Outcome:
        mine = list(items[self.rank.rank :: self.rank.world])
        local = self.inner.train_step(mine) if mine else Outcome(0.0, 0.0, 0)
        weight = sum(_weight(i) for i in mine)
        # float64: the sums are exact for any realistic count, the loss as exact as one rank's.
        totals = torch.tensor(
            [local.loss * weight, local.accuracy * weight, float(local.n_tokens), float(weight)],
            dtype=torch.float64,
            device=self.rank.device,
        )
        dist.all_reduce(totals)
        loss_sum, correct, n_tokens, total = (float(x) for x in totals.tolist())
        self.share.fraction = weight / total
        self._synchronise()
        return Outcome(loss=loss_sum / total, accuracy=correct / total, n_tokens=round(n_tokens))

    def _synchronise(self) -> None:
        """One backward through DDP: it all-reduces what every rank accumulated."""
        ctx: AbstractContextManager[Any] = self.autocast()
        with ctx:
            logits = self.ddp(input_ids=self.probe, use_cache=False).logits
        (logits.float().sum() * 0.0).backward()

    def evaluate(self, items: Sequence[Any]) -> Outcome:
        # Rank 0 evaluates alone (only it reports); no collective here.
        return self.inner.evaluate(items)

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        self.inner.max_tokens = value

    def micro_batches(self, items: Sequence[Any]) -> int:
        return self.inner.micro_batches(list(items[self.rank.rank :: self.rank.world]))


def sharded(objective: Objective, model: Any, probe_id: int, autocast: Any) -> Objective:
    """The objective as this process runs it: itself in a one-device job."""
    if _current is None:
        return objective
    return ShardedObjective(objective, model, _current, probe_id=probe_id, autocast=autocast)


# -- rank 0's answers, on every rank ---------------------------------------------------------------


class Agreed:
    """Hooks every rank calls: rank 0's hooks answer (and record), the answer is broadcast."""

    def __init__(self, rank: Rank, inner: TrainingHooks | None) -> None:
        self.rank = rank
        self.inner = inner

    def _agree(self, answer: Control | None) -> Control:
        code = torch.tensor(
            [_CONTROLS.index(answer) if answer is not None else 0],
            dtype=torch.long,
            device=self.rank.device,
        )
        dist.broadcast(code, src=0)
        return _CONTROLS[int(code.item())]

    def on_start(self, hp: ResolvedHyperparameters, resumed_from: CheckpointInfo | None) -> Control:
        return self._agree(self.inner.on_start(hp, resumed_from) if self.inner else None)

    def on_step(self, m: Metrics) -> Control:
        return self._agree(self.inner.on_step(m) if self.inner else None)

    def on_checkpoint(self, c: CheckpointInfo) -> Control:
        return self._agree(self.inner.on_checkpoint(c) if self.inner else None)

    def on_memory(self, plan: MemoryPlan, warning: str | None) -> None:
        # A record only (rank 0's, before the first step): no answer to agree on.
        if self.inner is not None:
            self.inner.on_memory(plan, warning)


# -- the launch ----------------------------------------------------------------------------------


def _backend(spec: TrainingSpec) -> str:
    cuda = spec.device != "cpu" and torch.cuda.is_available()
    return "nccl" if cuda else "gloo"


def _device(spec: TrainingSpec, local: int) -> torch.device:
    if _backend(spec) == "nccl":
        # The worker gave this job exactly its devices (CUDA_VISIBLE_DEVICES); local rank r
        # takes the r-th of them.
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _join_group(spec: TrainingSpec, place: _Place, local: int, store: Store) -> Rank:
    global _current
    device = _device(spec, local)
    rank = place.base + local
    dist.init_process_group(
        _backend(spec), store=store, rank=rank, world_size=place.world, timeout=COLLECTIVE_TIMEOUT
    )
    _current = Rank(rank, place.world, device)
    return _current


@dataclass(frozen=True)
class _Place:
    """Where this worker's processes sit in the group: global ranks ``base`` .. ``base +
    devices - 1`` of ``world``, meeting at ``host`` (the store's port comes later)."""

    base: int
    world: int
    host: str

    @staticmethod
    def of(spec: TrainingSpec, rendezvous: Rendezvous | None) -> _Place:
        if rendezvous is None:
            return _Place(0, spec.devices, "127.0.0.1")
        return _Place(
            rendezvous.node_rank * spec.devices,
            rendezvous.nodes * spec.devices,
            rendezvous.address,
        )


def _die_with_parent() -> None:
    """The kernel kills this process when rank 0 dies, however it died (Linux); elsewhere the
    next collective fails once rank 0's sockets are gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _peer(index: int, spec: TrainingSpec, parent: int, ports: Any, place: _Place) -> None:
    """Local rank ``index + 1``: trains as rank 0 does and records nothing."""
    from ftserve.training.trainer import train

    _die_with_parent()
    if os.getppid() != parent:  # its worker's first rank died before the line above took effect
        os._exit(EXIT_RANK_LOST)
    port = int(ports.get())
    store = TCPStore(place.host, port, place.world, is_master=False, timeout=RENDEZVOUS_TIMEOUT)
    rank = _join_group(spec, place, index + 1, store)
    try:
        train(spec, Agreed(rank, None))
    except (TrainingStopped, TrainingFailed):
        pass  # every rank reached the same end; rank 0 records it
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class _Gang:
    """The first rank of this worker's processes: starts the others, watches them, ends them.
    In a job on one worker it is rank 0; in a job on several it is its worker's first rank
    (rank 0 on the leader)."""

    def __init__(
        self, spec: TrainingSpec, hooks: TrainingHooks | None, rendezvous: Rendezvous | None
    ) -> None:
        from ftserve.modeling.sources import materialize

        # Built once, before the ranks exist: they would race to build a built-in model into
        # the same cache directory.
        materialize(spec.model, spec.models_cache_dir)
        self.spec = spec
        self.hooks = hooks
        self.rendezvous = rendezvous
        self.place = _Place.of(spec, rendezvous)
        self.grouped = False  # whether this rank has joined the group
        # Forking is what makes a rank start in milliseconds (torch and transformers are
        # imported already); a process whose CUDA is initialised must spawn instead.
        method = "spawn" if torch.cuda.is_initialized() else "fork"  # type: ignore[no-untyped-call]
        self.ports = multiprocessing.get_context(method).SimpleQueue()
        self.context: Any = None
        self._done = threading.Event()
        if spec.devices > 1:
            # Frozen, what a forked rank inherits is never collected there: garbage of an
            # earlier run in this process (a process group an FSDP mesh keeps in a reference
            # cycle) would otherwise wait forever, in the rank's collector, for threads the rank
            # does not have.
            gc.freeze()
            try:
                self.context = start_processes(  # type: ignore[no-untyped-call]
                    _peer,
                    args=(spec, os.getpid(), self.ports, self.place),
                    nprocs=spec.devices - 1,
                    join=False,
                    start_method=method,
                )
            finally:
                gc.unfreeze()
            self._watch = threading.Thread(target=self._watching, name="ftserve-ranks", daemon=True)
            self._watch.start()

    def _watching(self) -> None:
        while not self._done.is_set():
            try:
                if self.context.join(timeout=WATCH_SECONDS):
                    return  # every other rank ended cleanly
            except Exception as exc:  # a rank died; join has terminated the others
                if self._done.is_set():
                    return  # rank 0 is ending the run itself
                log.error("a rank of this job died (%s); ending the run", exc)
                os._exit(EXIT_RANK_LOST)

    def _store(self) -> TCPStore:
        """The group's c10d store: opened here on a job's only worker and on the leader of
        several (which then waits for the others to join), reached at the leader's otherwise."""
        rv = self.rendezvous
        if rv is not None and not rv.leads:
            return TCPStore(
                rv.address, rv.port, self.place.world, is_master=False, timeout=RENDEZVOUS_TIMEOUT
            )
        store = TCPStore(
            self.place.host,
            0,
            self.place.world,
            is_master=True,
            wait_for_workers=False,
            timeout=RENDEZVOUS_TIMEOUT,
        )
        if rv is not None and rv.assemble is not None:
            rv.assemble(store.port)
        return store

    def run(self) -> TrainingResult:
        from ftserve.training.trainer import train

        together = False  # whether the other ranks reach the same end by themselves
        try:
            store = self._store()
            port = self.rendezvous.port if self.rendezvous and not self.rendezvous.leads else 0
            for _ in range(self.spec.devices - 1):
                self.ports.put(port or store.port)
            rank = _join_group(self.spec, self.place, 0, store)
            self.grouped = True
            result = train(self.spec, Agreed(rank, self.hooks))
            together = True
            return result
        except (TrainingStopped, TrainingFailed):
            together = self.grouped
            raise
        except Exception as exc:
            if self.rendezvous is not None and _lost_a_worker(exc):
                # Another worker's rank is gone (its process or machine): the run is over, not
                # the job; the same exit as a local rank's death.
                log.error("a rank on another worker is gone (%s); ending the run", exc)
                os._exit(EXIT_RANK_LOST)
            if self.context is not None:
                # A collective fails when a rank's sockets close: give the watch a moment to
                # see that a rank died (and end the run as a crash) before this counts as a
                # failure.
                self._watch.join(timeout=2.0)
            raise
        finally:
            self._end(together)

    def _end(self, together: bool) -> None:
        global _current
        if self.context is not None:
            if together:
                self._watch.join(timeout=JOIN_SECONDS)
            self._done.set()
            for process in self.context.processes:
                if process.is_alive():
                    process.kill()
                process.join()
        self._done.set()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        _current = None


def _lost_a_worker(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective or rendezvous failing because a peer went away (gloo
    raises a plain RuntimeError naming the closed connection; NCCL and the c10d store raise
    torch.distributed's own errors)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "gloo")
    )


def train_on_devices(
    spec: TrainingSpec, hooks: TrainingHooks | None, rendezvous: Rendezvous | None = None
) -> TrainingResult:
    """Run the job on ``spec.devices`` processes of this worker (this one is its first rank),
    joined with the other workers' processes when ``rendezvous`` says the job has several;
    ``trainer.train`` itself when the job has one device on one worker. Rank 0 alone calls
    ``hooks`` (None on the other workers: they record nothing)."""
    from ftserve.training.trainer import train

    if rendezvous is None and spec.devices <= 1:
        assert hooks is not None
        return train(spec, hooks)
    return _Gang(spec, hooks, rendezvous).run()
