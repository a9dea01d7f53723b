"""The per-node supervisor: rendezvous, start, watch, stop, restart.

Design note: one asyncio loop consumes typed events from one queue -- worker
exits (pidfd readiness), handled signals (handlers only enqueue) and changes
of the rendezvous store (pushed by its watch). Nothing sleeps in a polling
loop: the first failure is seen the instant its process ends, a peer's death
the instant its lease ends. On a local failure the attempt's other workers are
stopped (signal, grace, SIGKILL) and, while the job-wide restart budget lasts,
every node restarts; a membership change restarts for free; a handled signal
is forwarded as the same signal to every worker's process group.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from rallypoint.agent.attempt import Attempt, AttemptDeps
from rallypoint.agent.job import (
    AgentEvent,
    Job,
    RendezvousChanged,
    RunResult,
    SignalArrived,
    WorkerExited,
)
from rallypoint.agent.prestart import Prestart
from rallypoint.agent.reporting import persist_failure
from rallypoint.clock import Clock, SystemClock
from rallypoint.errors import ChildFailedError, RendezvousClosedError, SignalReceived
from rallypoint.events.log import Event, EventKind, EventLog
from rallypoint.failures.report import FailureReport
from rallypoint.logs.layout import RunLayout
from rallypoint.rendezvous.base import Rendezvous
from rallypoint.rendezvous.factory import open_rendezvous
from rallypoint.rendezvous.machine import Change
from rallypoint.workers.guardian import Guardian

logger = logging.getLogger(__name__)

RESTART_GRACE = 30.0  # torchrun stops a failed group with a fixed 30 s grace
T = TypeVar("T")


class Ending(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a local worker failed
    MEMBERSHIP = "membership"  # the rendezvous changed: restart for free
    CLOSED = "closed"  # the job is over elsewhere


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's end, with the failure report or the reason."""

    ending: Ending
    report: FailureReport | None = None
    reason: str = ""


class Supervisor:
    """Runs one node's part of a job to success, exhaustion or a signal."""

    def __init__(
        self,
        job: Job,
        clock: Clock | None = None,
        early_signals: list[int] | None = None,
        prestarted: Prestart | None = None,
    ) -> None:
        self.job = job
        self._clock = clock or SystemClock()
        self._queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self._early = early_signals if early_signals is not None else []
        self._prestarted = prestarted
        self._cut_short: asyncio.Event | None = None
        self._signalled = asyncio.Event()
        self._installed: list[int] = []
        self._started_workers = False
        self.layout = (
            prestarted.layout
            if prestarted
            else RunLayout.create(job.config.log_dir, job.config.run_id, job.temp_root)
        )
        self.events = EventLog.for_handler(
            job.config.event_log_handler, job.config.run_id, self.layout.run_dir
        )
        self.report_path: str | None = None

    async def run(self) -> RunResult:
        """Run the job.

        Raises:
            ChildFailedError: workers failed and the restart budget is spent.
            SignalReceived: a handled signal stopped the job.
            RendezvousError: the nodes could not (or can no longer) agree.
        """
        self._install_signals()
        pre = self._prestarted
        guardian = pre.guardian if pre else Guardian()
        try:
            rendezvous: Rendezvous = (
                pre.rendezvous
                if pre
                else await self._race(open_rendezvous(self.job.config, self.job.host, self._clock))
            )
            try:
                return await self._recorded(guardian, rendezvous)
            finally:
                await rendezvous.close()
        finally:
            await guardian.aclose()
            self._remove_signals()
            self.events.close()

    async def _recorded(self, guardian: Guardian, rendezvous: Rendezvous) -> RunResult:
        """Run the attempts, with the run's start and end in the event log."""
        config = self.job.config
        self._emit(EventKind.RUN_STARTED, host=self.job.host, nproc_per_node=config.nproc_per_node)
        try:
            result = await self._attempts(guardian, rendezvous)
        except ChildFailedError as exc:
            culprit = exc.report.culprit.global_rank
            self._emit(EventKind.RUN_FAILED, culprit=culprit, reason=exc.report.headline)
            raise
        except SignalReceived as exc:
            self._emit(EventKind.SIGNAL_RECEIVED, signal=signal.Signals(exc.signum).name)
            raise
        self._emit(EventKind.RUN_SUCCEEDED, restarts=result.restarts)
        return result

    def _emit(self, kind: EventKind, **fields: object) -> None:
        self.events.emit(Event(kind, self._clock.wall(), fields))

    # --- signals -----------------------------------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.job.config.handled_signals:
            try:
                loop.add_signal_handler(sig, self._on_signal, int(sig))
            except (ValueError, RuntimeError):  # not the main thread
                logger.warning("cannot handle %s outside the main thread", sig.name)
                continue
            self._installed.append(int(sig))
        while self._early:  # caught before the loop existed; no more can come now
            self._on_signal(self._early.pop(0))

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._queue.put_nowait(SignalArrived(signum))
        self._signalled.set()
        if self._cut_short is not None:
            self._cut_short.set()

    def _pending_signal(self) -> int | None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, SignalArrived):
                return event.signum
        return None

    async def _race(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless a handled signal comes first (then raise SignalReceived)."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._signalled.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        signum = self._pending_signal() or int(signal.SIGTERM)
        raise SignalReceived(signum, before_workers=not self._started_workers)

    # --- attempts ----------------------------------------------------------------------

    async def _attempts(self, guardian: Guardian, rendezvous: Rendezvous) -> RunResult:
        rendezvous.listen(lambda: self._queue.put_nowait(RendezvousChanged()))
        deps = AttemptDeps(guardian, self._queue, self._clock, self.events)
        number = 0
        while True:
            attempt = await self._next_attempt(rendezvous, deps, number)
            outcome = await self._watch(attempt, rendezvous)
            if outcome.ending is Ending.SUCCEEDED:
                await self._race(rendezvous.finish())
                return RunResult(attempt.return_values(), attempt.restart_count)
            await self._after(outcome, rendezvous)
            number += 1

    async def _next_attempt(
        self, rendezvous: Rendezvous, deps: AttemptDeps, number: int
    ) -> Attempt:
        """Start (or, for a prestarted first attempt, adopt) the workers of ``number``."""
        pre, self._prestarted = self._prestarted, None
        if pre is not None:
            attempt = Attempt(self.job, pre.rdzv, number, self.layout, deps)
            self._started_workers = True
            await attempt.adopt(pre.prepared)
            return attempt
        signum = self._pending_signal()
        if signum is not None:
            raise SignalReceived(signum, before_workers=not self._started_workers)
        self._signalled.clear()
        rdzv = await self._race(rendezvous.next_round())
        attempt = Attempt(self.job, rdzv, number, self.layout, deps)
        self._started_workers = True
        await attempt.start()
        return attempt

    async def _after(self, outcome: Outcome, rendezvous: Rendezvous) -> None:
        """Decide, after a failed or interrupted attempt, whether to go on."""
        if outcome.ending is Ending.CLOSED:
            raise RendezvousClosedError(outcome.reason)
        if outcome.ending is Ending.MEMBERSHIP:
            self._emit(EventKind.GROUP_RESTARTING, reason=outcome.reason, spends_restart=False)
            logger.warning("%s; restarting the workers (no restart spent)", outcome.reason)
            return
        assert outcome.report is not None
        report = outcome.report
        count = await rendezvous.spend_restart()
        if count > self.job.config.max_restarts:
            self.report_path = persist_failure(
                report, self.layout, self.job.base_env.get("TORCHELASTIC_ERROR_FILE")
            )
            await rendezvous.close_job(False, report.headline)
            raise ChildFailedError(report)
        self._emit(EventKind.GROUP_RESTARTING, restart=count, reason=report.headline)
        logger.warning(
            "%s; restarting the workers (restart %d of %d)",
            report.headline,
            count,
            self.job.config.max_restarts,
        )

    async def _watch(self, attempt: Attempt, rendezvous: Rendezvous) -> Outcome:
        """Wait for the attempt's end.

        Success is counted from the exit events themselves, in the order they
        were queued, never from the workers' current states: when one worker
        exits 0 and another fails a moment later, the failure is still seen.
        """
        succeeded: set[int] = set()
        while True:
            event = await self._queue.get()
            if isinstance(event, SignalArrived):
                await self._stop_for_signal(attempt, event.signum)
            elif isinstance(event, RendezvousChanged):
                decision = rendezvous.running_decision()
                if decision.change is not Change.KEEP:
                    await self._stop(attempt, RESTART_GRACE)
                    ending = (
                        Ending.MEMBERSHIP if decision.change is Change.RESTART else Ending.CLOSED
                    )
                    return Outcome(ending, reason=decision.reason)
            elif event.attempt != attempt.number:
                continue
            elif event.worker.status is not None and not event.worker.status.succeeded:
                return Outcome(Ending.FAILED, report=await self._stop_for_failure(attempt, event))
            else:
                succeeded.add(event.worker.pid)
                if len(succeeded) == len(attempt.group.workers):
                    await self._stop(attempt, self.job.config.shutdown_timeout)
                    return Outcome(Ending.SUCCEEDED)

    async def _stop(self, attempt: Attempt, grace: float, signum: int = signal.SIGTERM) -> None:
        self._cut_short = asyncio.Event()
        await attempt.group.stop(signum, grace, self._cut_short)
        await attempt.drain()

    async def _stop_for_signal(self, attempt: Attempt, signum: int) -> None:
        logger.warning(
            "received %s, forwarding it to the workers and shutting down",
            signal.Signals(signum).name,
        )
        await self._stop(attempt, self.job.config.shutdown_timeout, signum)
        raise SignalReceived(signum, before_workers=False)

    async def _stop_for_failure(self, attempt: Attempt, first: WorkerExited) -> FailureReport:
        exits = {first.worker.pid: first}
        requeue: list[AgentEvent] = []
        while not self._queue.empty():  # exits already queued happened before our stop
            event = self._queue.get_nowait()
            if isinstance(event, WorkerExited) and event.attempt == attempt.number:
                exits[event.worker.pid] = event
            elif not isinstance(event, WorkerExited):
                requeue.append(event)
        for event in requeue:
            self._queue.put_nowait(event)
        status = first.worker.status
        logger.error(
            "failed (exitcode: %d) local_rank: %d (pid: %d) of binary: %s",
            status.torch_exitcode if status else 1,
            first.worker.request.local_rank,
            first.worker.pid,
            self.job.entrypoint.name,
        )
        to_stop = attempt.group.alive
        await self._stop(attempt, RESTART_GRACE)
        now = (self._clock.wall(), self._clock.monotonic())
        failed = [
            attempt.failure(e.worker, e.at_wall, e.at_monotonic)
            for e in exits.values()
            if e.worker.status is not None and not e.worker.status.succeeded
        ]
        stopped = [attempt.failure(w, *now) for w in to_stop]
        return FailureReport.from_failures(self.job.entrypoint.name, self.job.host, failed, stopped)
