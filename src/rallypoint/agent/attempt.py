"""One attempt on the event loop: its workers' exits and output, and its accounting.

The workers are prepared and spawned by :class:`~rallypoint.agent.launchpad.Launchpad`
(possibly before the loop existed); :meth:`Attempt.adopt` attaches their pidfds
and pipes to the loop, and the attempt turns exits into events for the
supervisor and failures into :class:`~rallypoint.failures.report.WorkerFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle  # the callable hand-off to our own local child; see function_child
import signal
from collections.abc import Callable
from dataclasses import dataclass

from rallypoint.agent.job import AgentEvent, Job, WorkerExited
from rallypoint.agent.launchpad import Launchpad, Prepared, Slot
from rallypoint.agent.prestart import Prestart
from rallypoint.agent.standbys import StandbyPool
from rallypoint.clock import Clock
from rallypoint.config import EntrypointKind
from rallypoint.events.log import EventLog, RunEvent, RunEventKind
from rallypoint.failures.error_file import read_error_file
from rallypoint.failures.oom import killed_by_oom
from rallypoint.failures.report import (
    WorkerFailure,
    hang_headline,
    hang_message,
    hang_warning,
    remote_culprit,
    timer_message,
)
from rallypoint.hangs.board import StackBoard
from rallypoint.hangs.dump import format_stack
from rallypoint.hangs.watch import Hang, HangWatch
from rallypoint.health.file_timer import Expiry
from rallypoint.logs.layout import RunLayout
from rallypoint.logs.pump import PipePump, pump_stream
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.command import BOOTSTRAP_FILES
from rallypoint.workers.group import WorkerGroup
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import WorkerProcess

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 2.0
ANNOUNCE_SECONDS = 2.0  # at most this long naming a culprit to the other nodes before its stop


@dataclass(frozen=True, slots=True)
class AttemptDeps:
    """What every attempt of a run shares."""

    guardian: Guardian
    post: Callable[[AgentEvent], None]  # hands an event to the supervisor's loop
    clock: Clock
    events: EventLog
    standbys: StandbyPool | None = None  # warm restarts, when on
    board: Callable[[], StackBoard | None] = lambda: None  # the nodes' shared stack digests


class Attempt:
    """Watch and account for one attempt's workers."""

    def __init__(
        self, job: Job, rdzv: RendezvousResult, number: int, layout: RunLayout, deps: AttemptDeps
    ) -> None:
        self.job, self.rdzv, self.number = job, rdzv, number
        self.restart_count = rdzv.restarts
        self._layout = layout
        self._deps = deps
        self._clock = deps.clock
        self.group = WorkerGroup(deps.guardian, self._exited, clock=deps.clock)
        self.prepared = Prepared()
        self._pumps: list[PipePump] = []
        self._winch = False  # a SIGWINCH handler is ours
        self._expiries: dict[int, Expiry] = {}  # worker pid -> the timer that killed it
        self._hangs: HangWatch | None = None
        self._hung: dict[int, str] = {}  # worker pid -> why the agent stopped it as hung
        self._board: StackBoard | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Spawn every local worker, then adopt them."""
        attempt_dir = self._layout.attempt_dir(self.restart_count)
        pad = Launchpad(self.job, self.rdzv, self.restart_count, attempt_dir)
        await self.adopt(pad.launch(self._deps.guardian, self._clock, self._deps.standbys))

    async def adopt(self, prepared: Prepared) -> None:
        """Attach spawned workers' pipes and exits to the loop."""
        self.prepared = prepared
        for stream in prepared.streams:
            self._pumps.append(await pump_stream(stream))
        self._follow_window_size(True)
        self.group.adopt(prepared.workers)
        if prepared.timers is not None:
            prepared.timers.attach(self._clock, self._timer_expired)
        if prepared.stacks is not None:
            ends = prepared.stacks.take()
            self._board = board = self._deps.board()
            if board is not None:
                board.period = max(self.job.config.stack_period, 1.0)
            timeout = self.job.config.hang_timeout
            self._hangs = HangWatch(ends, timeout, BOOTSTRAP_FILES, board)
            self._hangs.attach(self._clock, self._hang_found)
        for worker in prepared.workers:
            self._emit(
                RunEventKind.WORKER_STARTED,
                prepared.started_wall,
                worker,
                restart_count=self.restart_count,
                warm=worker.standby_kib is not None,
                **({"standby_kib": worker.standby_kib} if worker.standby_kib else {}),
            )
        logger.info(
            "attempt %d: %d workers, ranks %d-%d",
            self.number,
            len(prepared.workers),
            self.rdzv.base_rank,
            self.rdzv.base_rank + len(prepared.workers) - 1,
        )

    def _timer_expired(self, expiry: Expiry) -> None:
        """A worker's elastic timer ran out: kill the process with the signal it asked for."""
        if expiry.signal <= 0:
            logger.warning(
                "timer %r of pid %d expired; it asked for no signal", expiry.scope, expiry.pid
            )
            return
        worker = self.group.signal_process(expiry.pid, expiry.signal)
        if worker is None:
            logger.warning("timer %r expired for pid %d, not one of ours", expiry.scope, expiry.pid)
            return
        self._expiries.setdefault(worker.pid, expiry)
        logger.warning(
            "timer %r of local rank %d (pid %d) expired %.3f s ago; sent signal %d",
            expiry.scope,
            worker.request.local_rank,
            expiry.pid,
            expiry.overdue,
            expiry.signal,
        )

    def _hang_found(self, hang: Hang) -> None:
        """A rank's stack stopped changing: warn, or (with --hang-timeout) stop the culprits."""
        culprits = hang.culprits()
        message = hang_message(hang.verdict, culprits[0])
        stacks = {r: format_stack(s, f"rank {r}") for r, s in hang.stacks.items()}
        fields: dict[str, object] = {"attempt": self.number, "verdict": hang.verdict.kind.value}
        fields.update(culprits=list(culprits), message=message, stacks=stacks)
        self._deps.events.emit(RunEvent(RunEventKind.HANG_FOUND, self._clock.wall(), fields))
        if self.job.config.hang_timeout is None:
            logger.warning("%s", hang_warning(culprits, hang.verdict, stacks))
            return
        mine = {s.global_rank for s in self.prepared.slots.values()}
        if not mine & set(culprits):
            logger.error("%s", remote_culprit(culprits, message))
            return
        if self._board is None:
            self._stop_hung(hang, culprits)
            return
        first = next(
            s
            for s in sorted(self.prepared.slots.values(), key=lambda s: s.global_rank)
            if s.global_rank in culprits
        )
        own = hang_message(hang.verdict, first.global_rank)
        headline = hang_headline(first.global_rank, first.local_rank, self.job.host, own)
        task = asyncio.get_running_loop().create_task(self._announce(hang, culprits, headline))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, hang: Hang, culprits: tuple[int, ...], headline: str) -> None:
        """Name the culprit to every node, then stop it (the others' ranks fail after that)."""
        assert self._board is not None
        deadline = self._clock.monotonic() + ANNOUNCE_SECONDS
        with contextlib.suppress(TimeoutError):  # a store that does not answer delays no stop
            await self._clock.wait_until(self._board.announce(self.rdzv.round, headline), deadline)
        self._stop_hung(hang, culprits)

    def _stop_hung(self, hang: Hang, culprits: tuple[int, ...]) -> None:
        for worker in self.group.alive:
            rank = self.prepared.slots[worker.request.local_rank].global_rank
            if rank in culprits:
                self._hung[worker.pid] = hang_message(hang.verdict, rank)
                logger.error("rank %d (pid %d): %s", rank, worker.pid, self._hung[worker.pid])
                worker.signal_group(signal.SIGKILL)  # a hung process may not heed SIGTERM

    @property
    def elsewhere(self) -> str:
        """The hang another node announced for this round, if one did: its culprit's headline."""
        return self._board.announced(self.rdzv.round) if self._board is not None else ""

    def _exited(self, worker: WorkerProcess) -> None:
        if self._hangs is not None:
            self._hangs.forget(worker.request.local_rank)
        if self.prepared.timers is not None:
            self.prepared.timers.forget(worker.pid)
        event = WorkerExited(self.number, worker, self._clock.monotonic(), self._clock.wall())
        self._deps.post(event)
        status = worker.status.describe() if worker.status else "unknown"
        self._emit(RunEventKind.WORKER_EXITED, event.at_wall, worker, exit=status)

    def _emit(self, kind: RunEventKind, at: float, worker: WorkerProcess, **extra: object) -> None:
        slot = self.prepared.slots[worker.request.local_rank]
        fields = {
            "attempt": self.number,
            "rank": slot.global_rank,
            "local_rank": slot.local_rank,
            "pid": worker.pid,
            **extra,
        }
        self._deps.events.emit(RunEvent(kind, at, fields))

    def alive(self) -> list[WorkerProcess]:
        """Workers whose exit has not been seen yet."""
        return self.group.alive

    def notify(self, signum: int) -> int:
        """Pass ``signum`` on to every running worker's group; return how many got it."""
        return self.group.notify(signum)

    async def stop(self, signum: int, grace: float, cut_short: asyncio.Event) -> None:
        """Stop every worker (``signum``, ``grace``, SIGKILL) and read their pipes to the end."""
        await self.group.stop(signum, grace, cut_short)
        await self.drain()

    def _follow_window_size(self, on: bool) -> None:
        """Resize the workers' pseudo-terminals with the launcher's terminal (SIGWINCH)."""
        loop = asyncio.get_running_loop()
        if not on:
            if self._winch:
                loop.remove_signal_handler(signal.SIGWINCH)
                self._winch = False
            return
        terminals = [p for p in self._pumps if p.follows_terminal]
        for pump in terminals:
            pump.follow_size()  # it may have changed since the spawn
        if not terminals or signal.SIGWINCH in self.job.config.handled_signals:
            return
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGWINCH, _resize, terminals)
            self._winch = True

    async def drain(self) -> None:
        """Wait until every stream has been read to its end and shown, then let go of all.

        A stream whose write end lives on in some process we could not stop is
        closed on our side once it has been DRAIN_SECONDS without reaching its
        end, so nothing stays open past the attempt. Time spent waiting for a
        slow console does not count: what the workers wrote is never dropped.
        """
        consoles = self.prepared.consoles
        pending = {p.finished for p in self._pumps}
        while pending:
            await consoles.drained()
            deadline = self._clock.monotonic() + DRAIN_SECONDS
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_until(asyncio.wait(pending), deadline)
            pending = {f for f in pending if not f.done()}
            if not (consoles.any_pending or any(p.paused for p in self._pumps)):
                break
        for pump in self._pumps:
            pump.abandon()
        await asyncio.gather(*(p.finished for p in self._pumps))
        self._follow_window_size(False)
        await consoles.drained()
        consoles.close()
        if self.prepared.timers is not None:
            self.prepared.timers.close()
        if self._hangs is not None:
            self._hangs.close()

    def failure(
        self, worker: WorkerProcess, exited_wall: float, exited_mono: float
    ) -> WorkerFailure:
        """What the summary says about ``worker``."""
        slot = self.prepared.slots[worker.request.local_rank]
        assert worker.status is not None
        path = slot.files.path("error.json")
        content = read_error_file(path) if path else None
        oom = worker.status.signal == signal.SIGKILL and killed_by_oom(
            worker.pid, self.prepared.oom_count_at_start
        )
        runtime = exited_mono - self.prepared.started_at
        expiry = self._expiries.get(worker.pid)
        hung = self._hung.get(worker.pid, "")
        return WorkerFailure.build(
            (slot.local_rank, slot.global_rank, worker.pid),
            worker.status,
            (exited_wall, runtime),
            path,
            content,
            slot.tail.text(),
            oom,
            timer_message(expiry.scope, expiry.overdue) if expiry else hung,
            stack=self._stack_of(worker.request.local_rank, bool(hung)),
            hung=bool(hung),
        )

    def _stack_of(self, local_rank: int, hung: bool) -> str:
        """The Python stack at the fatal signal, or the latest sample of a hung rank."""
        if self._hangs is None:
            return ""
        fatal = self._hangs.crash_stack(local_rank)
        crashed = fatal.crashed if fatal is not None else None
        if fatal is not None and crashed is not None:
            return format_stack(crashed, f"Python stack at {fatal.reason}")
        latest = self._hangs.latest_stack(local_rank) if hung else None
        return format_stack(latest, "Python stack when found hung") if latest else ""

    def rank_status(self, stacks: bool) -> list[dict[str, object]]:
        """Per local worker, for ``rallypoint status``: state, last output, and its stack."""
        alive = {w.request.local_rank for w in self.group.alive}
        by_local = {w.request.local_rank: w for w in self.prepared.workers}
        return [
            self._one_status(slot, by_local.get(local), local in alive, stacks)
            for local, slot in sorted(self.prepared.slots.items())
        ]

    def _one_status(
        self, slot: Slot, worker: WorkerProcess | None, alive: bool, stacks: bool
    ) -> dict[str, object]:
        hangs, local = self._hangs, slot.local_rank
        data: dict[str, object] = {"rank": slot.global_rank, "local_rank": local}
        data["pid"] = worker.pid if worker else None
        data["last_output"] = slot.out_tail.text()
        data["last_stderr"] = next(reversed(slot.tail.text().splitlines()), "")
        data["has_stacks"] = hangs is not None  # --no-python workers have none
        if not alive:
            status = worker.status if worker else None
            data["state"], data["exit"] = "exited", status.describe() if status else ""
            return data
        unchanged = hangs.unchanged_for(local) if hangs else None
        data["state"], data["unchanged_for"] = "running", unchanged
        data["stuck"] = hangs is not None and unchanged is not None and unchanged >= hangs.timeout
        if stacks:
            latest = hangs.latest_stack(local) if hangs else None
            data["stack"] = format_stack(latest, "stack") if latest else None
        return data

    def return_values(self) -> dict[int, object]:
        """Per global rank: a callable's return value, or None for programs."""
        return {
            slot.global_rank: self._result_of(slot.work_dir)
            for slot in self.prepared.slots.values()
        }

    def _result_of(self, work_dir: str) -> object:
        if self.job.entrypoint.kind is not EntrypointKind.CALLABLE:
            return None
        with open(os.path.join(work_dir, "result.pickle"), "rb") as handle:
            return pickle.load(handle)  # noqa: S301 - written by our own child


def _resize(pumps: list[PipePump]) -> None:
    for pump in pumps:
        pump.follow_size()


class LocalAttempts:
    """Starts this node's attempts; attempt 0 of a prestarted job is adopted instead."""

    def __init__(
        self, job: Job, layout: RunLayout, deps: AttemptDeps, prestarted: Prestart | None
    ) -> None:
        self._job, self._layout, self._deps = job, layout, deps
        self._prestarted = prestarted

    @property
    def prestarted(self) -> bool:
        """Whether attempt 0's workers already run."""
        return self._prestarted is not None

    async def __call__(self, rdzv: RendezvousResult | None, number: int) -> Attempt:
        """Attempt ``number`` of round ``rdzv``, its workers running and watched."""
        pre, self._prestarted = self._prestarted, None
        if pre is not None:
            attempt = Attempt(self._job, pre.rdzv, number, self._layout, self._deps)
            await attempt.adopt(pre.prepared)
        else:
            assert rdzv is not None
            attempt = Attempt(self._job, rdzv, number, self._layout, self._deps)
            await attempt.start()
        if self._deps.standbys is not None:
            self._deps.standbys.workers_started()
            if self._may_restart(attempt.restart_count):
                self._deps.standbys.fill()  # the workers are started: now the next ones
            else:
                await self._deps.standbys.drain()  # one still importing was passed over
        return attempt

    def _may_restart(self, restarts: int) -> bool:
        config = self._job.config
        return restarts < config.max_restarts or config.min_nodes < config.max_nodes
