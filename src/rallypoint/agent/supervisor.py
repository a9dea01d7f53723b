"""The per-node supervisor: rendezvous, start, watch, stop, restart.

Design note: one asyncio loop consumes typed events from one queue -- worker
exits (pidfd readiness) and handled signals (handlers only enqueue). Nothing
sleeps in a polling loop: the first failure is seen the instant its process
ends. On a failure the attempt's other workers are stopped (signal, grace,
SIGKILL) and, while the restart budget lasts, the group starts again; a
handled signal is forwarded as the same signal to every worker's process group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

from rallypoint.agent.attempt import Attempt, AttemptDeps
from rallypoint.agent.job import AgentEvent, Job, RunResult, SignalArrived, WorkerExited
from rallypoint.clock import Clock, SystemClock
from rallypoint.errors import ChildFailedError, SignalReceived
from rallypoint.events.log import Event, EventKind, EventLog
from rallypoint.failures.error_file import write_error_file
from rallypoint.failures.report import FailureReport, WorkerFailure
from rallypoint.logs.layout import RunLayout
from rallypoint.rendezvous.single import SingleNodeRendezvous
from rallypoint.workers.guardian import Guardian

logger = logging.getLogger(__name__)

RESTART_GRACE = 30.0  # torchrun stops a failed group with a fixed 30 s grace


class Supervisor:
    """Runs one node's part of a job to success, exhaustion or a signal."""

    def __init__(
        self, job: Job, clock: Clock | None = None, early_signals: list[int] | None = None
    ) -> None:
        self.job = job
        self._clock = clock or SystemClock()
        self._queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self._early = early_signals if early_signals is not None else []
        self._cut_short: asyncio.Event | None = None
        self._installed: list[int] = []
        self.layout = RunLayout.create(job.config.log_dir, job.config.run_id)
        self.events = EventLog.for_handler(
            job.config.event_log_handler, job.config.run_id, self.layout.run_dir
        )
        self.report_path: str | None = None

    async def run(self) -> RunResult:
        """Run the job.

        Raises:
            ChildFailedError: workers failed and the restart budget is spent.
            SignalReceived: a handled signal stopped the job.
        """
        self._install_signals()
        guardian = Guardian()
        try:
            rendezvous = SingleNodeRendezvous(self.job.config, self.job.host)
            try:
                return await self._recorded(guardian, rendezvous)
            finally:
                rendezvous.close()
        finally:
            guardian.close()
            self._remove_signals()
            self.events.close()

    async def _recorded(self, guardian: Guardian, rendezvous: SingleNodeRendezvous) -> RunResult:
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
        if self._cut_short is not None:
            self._cut_short.set()

    def _pending_signal(self) -> int | None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, SignalArrived):
                return event.signum
        return None

    async def _attempts(self, guardian: Guardian, rendezvous: SingleNodeRendezvous) -> RunResult:
        restarts, number = 0, 0
        while True:
            signum = self._pending_signal()
            if signum is not None:
                raise SignalReceived(signum, before_workers=number == 0)
            rdzv = await rendezvous.next_round()
            deps = AttemptDeps(guardian, self._queue, self._clock, self.events)
            attempt = Attempt(self.job, rdzv, number, restarts, self.layout, deps)
            await attempt.start()
            report = await self._watch(attempt)
            if report is None:
                return RunResult(attempt.return_values(), restarts)
            if restarts >= self.job.config.max_restarts:
                self._final_failure(report)
                raise ChildFailedError(report)
            restarts, number = restarts + 1, number + 1
            self._emit(EventKind.GROUP_RESTARTING, restart=restarts, reason=report.headline)
            logger.warning(
                "%s; restarting the workers (restart %d of %d)",
                report.headline,
                restarts,
                self.job.config.max_restarts,
            )

    async def _watch(self, attempt: Attempt) -> FailureReport | None:
        """Wait for the attempt's end: None on success, a report on failure."""
        while True:
            event = await self._queue.get()
            if isinstance(event, SignalArrived):
                await self._stop_for_signal(attempt, event.signum)
            elif event.attempt != attempt.number:
                continue
            elif event.worker.status is not None and not event.worker.status.succeeded:
                return await self._stop_for_failure(attempt, event)
            elif not attempt.group.alive:
                await attempt.group.stop(signal.SIGTERM, self.job.config.shutdown_timeout)
                await attempt.drain()
                return None

    async def _stop_for_signal(self, attempt: Attempt, signum: int) -> None:
        logger.warning(
            "received %s, forwarding it to the workers and shutting down",
            signal.Signals(signum).name,
        )
        self._cut_short = asyncio.Event()
        await attempt.group.stop(signum, self.job.config.shutdown_timeout, self._cut_short)
        await attempt.drain()
        raise SignalReceived(signum, before_workers=False)

    async def _stop_for_failure(self, attempt: Attempt, first: WorkerExited) -> FailureReport:
        exits = {first.worker.pid: first}
        while not self._queue.empty():  # exits already queued happened before our stop
            event = self._queue.get_nowait()
            if isinstance(event, WorkerExited) and event.attempt == attempt.number:
                exits[event.worker.pid] = event
            elif isinstance(event, SignalArrived):
                self._queue.put_nowait(event)
                break
        to_stop = attempt.group.alive
        self._cut_short = asyncio.Event()
        await attempt.group.stop(signal.SIGTERM, RESTART_GRACE, self._cut_short)
        await attempt.drain()
        now = (self._clock.wall(), self._clock.monotonic())
        failed = [
            attempt.failure(e.worker, e.at_wall, e.at_monotonic)
            for e in exits.values()
            if e.worker.status is not None and not e.worker.status.succeeded
        ]
        stopped = [attempt.failure(w, *now) for w in to_stop]
        return FailureReport.from_failures(self.job.entrypoint.name, self.job.host, failed, stopped)

    def _final_failure(self, report: FailureReport) -> None:
        if self.layout.run_dir is not None:
            path = self.layout.run_dir / "failure.json"
            path.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
            self.report_path = str(path)
        own = self.job.base_env.get("TORCHELASTIC_ERROR_FILE")
        if own:
            write_error_file(own, _root_cause_document(report.culprit))


def _root_cause_document(culprit: WorkerFailure) -> dict[str, object]:
    """torchrun's copy of the root cause for the launcher's own error file."""
    return {
        "message": {
            "message": culprit.message,
            "extraInfo": {
                "py_callstack": culprit.traceback,
                "timestamp": str(int(culprit.exited_at)),
            },
            "errorCode": culprit.status.torch_exitcode,
        }
    }
