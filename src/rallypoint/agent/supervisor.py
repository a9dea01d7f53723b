"""The per-node supervisor: the driver of :mod:`rallypoint.agent.policy`.

Design note: every decision is the policy's; this module only turns what
happens on the loop into policy events and the policy's actions into I/O. One
queue carries everything that happens (worker exits from pidfd readiness,
handled signals -- the handlers only enqueue, early ones included -- and
changes of the rendezvous store pushed by its watch), and :meth:`_next` is the
one place that reads it. An action that takes time (joining a round, stopping
the workers, counting a restart, the exit barrier) runs as the one outstanding
operation while the queue is still read, so a signal or an exit is handled at
once, whatever the node is waiting for. Nothing sleeps in a polling loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rallypoint.agent import policy as p
from rallypoint.agent import policy_messages as m
from rallypoint.agent.attempt import AttemptDeps, LocalAttempts
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
from rallypoint.agent.standbys import StandbyPool
from rallypoint.agent.status import StatusServer, snapshot
from rallypoint.clock import Clock, SystemClock
from rallypoint.errors import (
    ChildFailedError,
    RendezvousClosedError,
    RendezvousLostError,
    SignalReceived,
)
from rallypoint.events.log import EventLog, RunEvent, RunEventKind
from rallypoint.failures.report import FailureReport
from rallypoint.logs.file_writer import LOG_FILES
from rallypoint.logs.layout import RunLayout
from rallypoint.rendezvous.base import Rendezvous
from rallypoint.rendezvous.factory import open_rendezvous
from rallypoint.rendezvous.machine import Change
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import WorkerProcess

if TYPE_CHECKING:
    from rallypoint.agent.seams import Attempts, MakeAttempts, RunningAttempt
    from rallypoint.hangs.board import StackBoard

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs one node's part of a job to success, exhaustion or a signal.

    ``rendezvous`` and ``attempts`` are seams for tests: by default the
    rendezvous is opened from the config, and attempts spawn real workers
    (``attempts`` gets the callback through which they post their exits).
    """

    def __init__(
        self,
        job: Job,
        clock: Clock | None = None,
        early_signals: list[int] | None = None,
        prestarted: Prestart | None = None,
        *,
        rendezvous: Rendezvous | None = None,
        attempts: MakeAttempts | None = None,
    ) -> None:
        self.job = job
        self._clock = clock or SystemClock()
        self._queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self._early = early_signals if early_signals is not None else []
        self._prestarted = prestarted
        self._rendezvous = rendezvous
        self._make_attempts = attempts
        self._installed: list[int] = []
        config = job.config
        self._policy = p.Policy(
            p.Settings(
                config.nproc_per_node,
                config.max_restarts,
                float(config.shutdown_timeout),
                notices_reach_workers=config.notices_reach_workers,
            )
        )
        self._todo: deque[m.Action] = deque()
        self._op: asyncio.Task[m.Event] | None = None
        self._attempt: RunningAttempt | None = None
        self._round: RendezvousResult | None = None
        self._exits: dict[int, WorkerExited] = {}
        self._to_stop: list[WorkerProcess] = []
        self._hasten = asyncio.Event()
        self.report: FailureReport | None = None  # the last failure's, once stopped
        self._standbys: StandbyPool | None = None
        self.layout = (
            prestarted.layout
            if prestarted
            else RunLayout.create(config.log_dir, config.run_id, job.temp_root)
        )
        self.events = EventLog.for_handler(
            config.event_log_handler, config.run_id, self.layout.run_dir
        )
        self.report_path: str | None = None
        self.notices: list[tuple[str, float, int]] = []  # (signal name, wall time, workers)

    async def run(self) -> RunResult:
        """Run the job.

        Raises:
            ChildFailedError: workers failed and the restart budget is spent.
            SignalReceived: a handled signal stopped the job.
            RendezvousError: the nodes could not (or can no longer) agree.
        """
        self._install_signals()
        pre = self._prestarted
        guardian = pre.guardian if pre else None
        if pre is not None:
            self._rendezvous = pre.rendezvous
        if self._rendezvous is not None:
            self._follow(self._rendezvous)
        status = self._status_server()
        try:
            if status is not None:
                await status.start()
            if self._make_attempts is None:
                guardian = guardian or Guardian()
                if self.job.config.warm_modules:
                    self._standbys = StandbyPool(self.job, guardian)
                self._make_attempts = self._local_attempts(guardian)
            return await self._recorded(self._make_attempts(self._queue.put_nowait))
        finally:
            await self._cancel_op()
            if status is not None:
                await status.close()
            if self._rendezvous is not None:
                await self._rendezvous.close()
            if self._standbys is not None:
                await self._standbys.aclose()
            if guardian is not None:
                await guardian.aclose()
            self._remove_signals()
            self.events.close()
            await asyncio.to_thread(LOG_FILES.drain)  # the log files whole before the run ends

    def _local_attempts(self, guardian: Guardian) -> MakeAttempts:
        def make(post: Callable[[AgentEvent], None]) -> Attempts:
            deps = AttemptDeps(
                guardian, post, self._clock, self.events, self._standbys, self._stack_board
            )
            return LocalAttempts(self.job, self.layout, deps, self._prestarted)

        return make

    def _status_server(self) -> StatusServer | None:
        run_dir = self.layout.run_dir
        if run_dir is None or self._make_attempts is not None:  # no folder, or a test's fakes
            return None
        return StatusServer(
            run_dir,
            lambda s: snapshot(self.job, self._now_round(), self._attempt, s, self._standbys),
        )

    def _now_round(self) -> RendezvousResult | None:
        pre = self._prestarted
        return self._round or (pre.rdzv if pre is not None else None)

    def _stack_board(self) -> StackBoard | None:
        return self._rendezvous.stack_board() if self._rendezvous is not None else None

    async def _recorded(self, attempts: Attempts) -> RunResult:
        """Drive the policy, with the run's start and end in the event log."""
        config = self.job.config
        self._emit(
            RunEventKind.RUN_STARTED, host=self.job.host, nproc_per_node=config.nproc_per_node
        )
        try:
            result = await self._drive(attempts)
        except SignalReceived as exc:
            self._emit(RunEventKind.SIGNAL_RECEIVED, signal=signal.Signals(exc.signum).name)
            raise
        self._emit(RunEventKind.RUN_SUCCEEDED, restarts=result.restarts)
        return result

    def _emit(self, kind: RunEventKind, **fields: object) -> None:
        self.events.emit(RunEvent(kind, self._clock.wall(), fields))

    # --- signals: the handlers only enqueue --------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.job.config
        for sig in (*config.handled_signals, *config.notice_signals):
            try:
                loop.add_signal_handler(sig, self._queue.put_nowait, SignalArrived(int(sig)))
            except (ValueError, RuntimeError):  # not the main thread
                logger.warning("cannot handle %s outside the main thread", sig.name)
                continue
            self._installed.append(int(sig))
        while self._early:  # caught before the loop existed; no more can come now
            self._queue.put_nowait(SignalArrived(self._early.pop(0)))

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)

    # --- the loop ------------------------------------------------------------------------

    async def _drive(self, attempts: Attempts) -> RunResult:
        self._feed(m.Begin(prestarted=attempts.prestarted))
        while True:
            while self._todo:
                result = await self._do(self._todo.popleft(), attempts)
                if result is not None:
                    return result
            event = await self._next()
            if event is not None:
                self._feed(event)

    def _feed(self, event: m.Event) -> None:
        self._todo.extend(self._policy.handle(event, self._clock.monotonic()))

    async def _next(self) -> m.Event | None:
        """The next policy event: from the queue (first) or the outstanding operation."""
        op = self._op
        if op is None or not self._queue.empty():
            return self._translate(await self._queue.get())
        getter = asyncio.ensure_future(self._queue.get())
        await asyncio.wait((getter, op), return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return self._translate(getter.result())
        getter.cancel()
        self._op = None
        return op.result()

    def _translate(self, event: AgentEvent) -> m.Event | None:
        if isinstance(event, SignalArrived):
            if event.signum in self.job.config.notice_signals:
                return m.Noticed(event.signum)
            return m.Signalled(event.signum)
        if isinstance(event, WorkerExited):
            if self._attempt is not None and event.attempt == self._attempt.number:
                self._exits[event.worker.pid] = event
            status = event.worker.status
            return m.Exited(
                event.attempt, event.worker.pid, status is not None and status.succeeded
            )
        return self._changed() if isinstance(event, RendezvousChanged) else None

    def _changed(self) -> m.Event | None:
        assert self._rendezvous is not None
        decision = self._rendezvous.running_decision()
        if decision.change is Change.RESTART:
            return m.MembershipChanged(decision.reason)
        if decision.change is Change.CLOSED:
            return m.JobClosed(decision.reason)
        if decision.change is Change.LOST:
            return m.StoreLost(decision.reason)
        return None

    def _start_op(self, work: Awaitable[m.Event]) -> None:
        assert self._op is None
        self._op = asyncio.ensure_future(work)

    async def _cancel_op(self) -> None:
        op, self._op = self._op, None
        if op is not None and not op.done():
            op.cancel()
        if op is not None:
            await asyncio.gather(op, return_exceptions=True)

    # --- actions -------------------------------------------------------------------------

    async def _do(self, action: m.Action, attempts: Attempts) -> RunResult | None:
        if isinstance(action, m.JoinRound):
            self._start_op(self._join())
        elif isinstance(action, m.StartWorkers):
            self._exits = {}
            self._attempt = await attempts(self._round, action.attempt)
        elif isinstance(action, m.GatherQueued):
            self._gather(action.pid)
        elif isinstance(action, m.StopWorkers):
            self._stop(action)
        elif isinstance(action, m.ForwardNotice | m.NoteNotice | m.DropNotice):
            self._notice(action)
        elif isinstance(action, m.HastenStop):
            self._hasten.set()
        elif isinstance(action, m.ReportFailure):
            self.report = self._failure_report(action.failed)
        elif isinstance(action, m.SpendRestart):
            self._start_op(self._spend_restart())
        elif isinstance(action, m.RestartFree | m.RestartSpent):
            self._say_restart(action)
        elif isinstance(action, m.Finish):
            self._start_op(self._finish())
        elif isinstance(action, m.GiveUp):
            await self._give_up()
        else:
            return await self._end(action)
        return None

    async def _join(self) -> m.Event:
        if self._standbys is not None and self._attempt is None and self.job.config.max_nodes > 1:
            self._standbys.fill()  # the first round: import while the other nodes come
        if self._rendezvous is None:
            self._rendezvous = await open_rendezvous(self.job.config, self.job.host, self._clock)
            self._follow(self._rendezvous)
        self._round = await self._rendezvous.next_round()
        return m.RoundJoined()

    def _follow(self, rendezvous: Rendezvous) -> None:
        rendezvous.listen(lambda: self._queue.put_nowait(RendezvousChanged()))

    def _gather(self, first: int) -> None:
        """Feed the exits (and all else) queued before the stop begins, then Gathered."""
        worker = self._exits[first].worker
        logger.error(
            "failed (exitcode: %d) local_rank: %d (pid: %d) of binary: %s",
            worker.status.torch_exitcode if worker.status else 1,
            worker.request.local_rank,
            worker.pid,
            self.job.entrypoint.name,
        )
        while not self._queue.empty():
            event = self._translate(self._queue.get_nowait())
            if event is not None:
                self._feed(event)
        self._feed(m.Gathered())

    def _stop(self, action: m.StopWorkers) -> None:
        assert self._attempt is not None
        if self._policy.state.stop is p.StopReason.SIGNAL:
            logger.warning(
                "received %s, forwarding it to the workers and shutting down",
                signal.Signals(action.signum).name,
            )
        self._to_stop = self._attempt.alive()
        self._hasten = asyncio.Event()
        grace = max(0.0, action.deadline - self._clock.monotonic())
        self._start_op(self._stopping(self._attempt, action.signum, grace, self._hasten))

    async def _stopping(
        self, attempt: RunningAttempt, signum: int, grace: float, hasten: asyncio.Event
    ) -> m.Event:
        await attempt.stop(signum, grace, hasten)
        return m.Stopped()

    def _notice(self, action: m.ForwardNotice | m.NoteNotice | m.DropNotice) -> None:
        name = signal.Signals(action.signum).name
        reached = 0
        if isinstance(action, m.ForwardNotice):
            assert self._attempt is not None
            reached = self._attempt.notify(action.signum)
        elif isinstance(action, m.NoteNotice):
            assert self._attempt is not None
            reached = len(self._attempt.alive())
        self.notices.append((name, self._clock.wall(), reached))
        sent = isinstance(action, m.ForwardNotice)
        self._emit(RunEventKind.NOTICE_FORWARDED, signal=name, workers=reached, resent=sent)
        if sent:
            logger.warning("received %s: passed on to %d workers as a notice", name, reached)
        elif reached:
            logger.warning(
                "received %s as a notice; Slurm gave it to the %d workers too, so it is not "
                "sent again",
                name,
                reached,
            )
        else:
            logger.warning("received %s as a notice while no worker runs: dropped", name)

    def _failure_report(self, failed: tuple[int, ...]) -> FailureReport:
        assert self._attempt is not None
        attempt, now = self._attempt, (self._clock.wall(), self._clock.monotonic())
        exits = [self._exits[pid] for pid in failed]
        culprits = [attempt.failure(e.worker, e.at_wall, e.at_monotonic) for e in exits]
        stopped = [attempt.failure(w, *now) for w in self._to_stop]
        name, host = self.job.entrypoint.name, self.job.host
        return FailureReport.from_failures(name, host, culprits, stopped, attempt.elsewhere)

    async def _spend_restart(self) -> m.Event:
        assert self._rendezvous is not None
        return m.RestartCounted(await self._rendezvous.spend_restart())

    async def _finish(self) -> m.Event:
        assert self._rendezvous is not None
        await self._rendezvous.finish()
        return m.Finished()

    def _say_restart(self, action: m.RestartFree | m.RestartSpent) -> None:
        if isinstance(action, m.RestartFree):
            self._emit(RunEventKind.GROUP_RESTARTING, reason=action.reason, spends_restart=False)
            logger.warning("%s; restarting the workers (no restart spent)", action.reason)
            return
        assert self.report is not None
        headline, limit = self.report.headline, self.job.config.max_restarts
        self._emit(RunEventKind.GROUP_RESTARTING, restart=action.count, reason=headline)
        logger.warning(
            "%s; restarting the workers (restart %d of %d)", headline, action.count, limit
        )

    async def _give_up(self) -> None:
        assert self.report is not None
        assert self._rendezvous is not None
        report = self.report
        error_file = self.job.base_env.get("TORCHELASTIC_ERROR_FILE")
        self.report_path = persist_failure(report, self.layout, error_file)
        await self._rendezvous.close_job(False, report.headline)
        culprit = report.culprit.global_rank
        self._emit(RunEventKind.RUN_FAILED, culprit=culprit, reason=report.headline)
        raise ChildFailedError(report)

    async def _end(self, action: m.Action) -> RunResult:
        assert isinstance(action, m.End)
        await self._cancel_op()
        if action.ending is m.Ending.SIGNALLED:
            raise SignalReceived(action.signum, before_workers=action.before_workers)
        if action.ending is m.Ending.CLOSED:
            raise RendezvousClosedError(action.reason)
        if action.ending is m.Ending.LOST:
            cause = self._rendezvous.failure if self._rendezvous is not None else None
            raise RendezvousLostError(action.reason) from cause
        attempt = self._attempt
        assert attempt is not None
        return RunResult(attempt.return_values(), attempt.restart_count)
