"""One attempt: this node's workers for one rendezvous round, with their streams.

Stream wiring, per worker and stream (contract §6, with our fixes):
- stdout neither redirected, tee'd nor filtered: inherited (no cost at all);
- otherwise a pipe pumped to the file (redirect, tee, or a filtered rank whose
  output torchrun would drop) and, when tee'd and shown, to the console with a
  ``[role<local_rank>]:`` prefix;
- stderr is always a pipe, so that its last lines reach the failure summary
  whatever the settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle  # the callable handoff to our own local child; see function_child
import signal
import string
import sys
import tempfile
from dataclasses import dataclass

from rallypoint.agent.job import AgentEvent, Job, WorkerExited
from rallypoint.agent.worker_env import WorkerPlace, worker_env
from rallypoint.clock import Clock
from rallypoint.config import EntrypointKind, StdMask
from rallypoint.events.log import Event, EventKind, EventLog
from rallypoint.failures.error_file import read_error_file
from rallypoint.failures.oom import killed_by_oom, oom_kill_count
from rallypoint.failures.report import WorkerFailure
from rallypoint.logs.layout import RunLayout, WorkerFiles
from rallypoint.logs.pump import (
    ConsoleSink,
    FileSink,
    FilteredFileSink,
    LineSink,
    PipePump,
    TailSink,
    pump_pipe,
)
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.command import substitute_local_rank_any, worker_argv
from rallypoint.workers.group import WorkerGroup
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import SpawnRequest, WorkerProcess

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "[${role_name}${local_rank}]:"
DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class AttemptDeps:
    """What every attempt of a run shares."""

    guardian: Guardian
    queue: asyncio.Queue[AgentEvent]
    clock: Clock
    events: EventLog


@dataclass(frozen=True, slots=True)
class Slot:
    """What the attempt keeps about one local rank."""

    local_rank: int
    global_rank: int
    files: WorkerFiles
    tail: TailSink
    work_dir: str  # where a callable's payload and result live


class Attempt:
    """Start, watch and account for one attempt's workers."""

    def __init__(
        self,
        job: Job,
        rdzv: RendezvousResult,
        number: int,
        restart_count: int,
        layout: RunLayout,
        deps: AttemptDeps,
    ) -> None:
        self.job, self.rdzv, self.number, self.restart_count = job, rdzv, number, restart_count
        self._deps = deps
        self._clock = deps.clock
        self.group = WorkerGroup(deps.guardian, self._exited)
        self.oom_count_at_start = oom_kill_count()
        self.dir = layout.attempt_dir(restart_count)
        self.slots: dict[int, Slot] = {}
        self._pumps: list[PipePump] = []
        self.started_at = 0.0

    def _exited(self, worker: WorkerProcess) -> None:
        event = WorkerExited(self.number, worker, self._clock.monotonic(), self._clock.wall())
        self._deps.queue.put_nowait(event)
        status = worker.status.describe() if worker.status else "unknown"
        self._emit(EventKind.WORKER_EXITED, event.at_wall, worker, exit=status)

    def _emit(self, kind: EventKind, at: float, worker: WorkerProcess, **extra: object) -> None:
        slot = self.slots[worker.request.local_rank]
        self._deps.events.emit(
            Event(
                kind,
                at,
                {
                    "attempt": self.number,
                    "rank": slot.global_rank,
                    "local_rank": slot.local_rank,
                    "pid": worker.pid,
                    **extra,
                },
            )
        )

    async def start(self) -> None:
        """Spawn every local worker with its environment and streams."""
        self.started_at = self._clock.monotonic()
        requests = [await self._prepare(lr) for lr in range(self.job.config.nproc_per_node)]
        try:
            self.group.start(requests)
        finally:
            for request in requests:
                for fd in (request.stdout, request.stderr):
                    if fd is not None:
                        os.close(fd)
        for worker in self.group.workers:
            self._emit(
                EventKind.WORKER_STARTED,
                self._clock.wall(),
                worker,
                restart_count=self.restart_count,
            )
        logger.info(
            "attempt %d: started %d workers, ranks %d-%d",
            self.number,
            len(requests),
            self.rdzv.base_rank,
            self.rdzv.base_rank + len(requests) - 1,
        )

    async def _prepare(self, local_rank: int) -> SpawnRequest:
        files = WorkerFiles.create(self.dir, local_rank)
        work_dir = str(files.folder) if files.folder is not None else self._scratch()
        slot = Slot(local_rank, self.rdzv.base_rank + local_rank, files, TailSink(), work_dir)
        self.slots[local_rank] = slot
        place = WorkerPlace(local_rank, self.restart_count, files.path("error.json"))
        env = worker_env(self.job.config, self.rdzv, place, self.job.base_env)
        argv = worker_argv(self.job.entrypoint, local_rank, self.job.base_env, self._payload(slot))
        stdout = await self._stream(slot, StdMask.OUT, 1, [])
        stderr = await self._stream(slot, StdMask.ERR, 2, [slot.tail])
        return SpawnRequest(local_rank, argv, env, stdout, stderr)

    def _prefix(self, slot: Slot) -> bytes:
        template = self.job.config.log_line_prefix_template or DEFAULT_PREFIX
        text = string.Template(template).safe_substitute(
            role_name=self.job.config.role, rank=slot.global_rank, local_rank=slot.local_rank
        )
        return text.encode()

    async def _stream(
        self, slot: Slot, mask: StdMask, console_fd: int, sinks: list[LineSink]
    ) -> int | None:
        config = self.job.config
        redirected = bool(config.redirects.for_rank(slot.local_rank) & mask)
        teed = bool(config.tee.for_rank(slot.local_rank) & mask)
        shown = config.local_ranks_filter is None or slot.local_rank in config.local_ranks_filter
        name = "stdout.log" if mask is StdMask.OUT else "stderr.log"
        if (redirected or teed or not shown) and slot.files.folder is not None:
            sinks.append(FileSink(slot.files.path(name)))
        if teed:
            sinks.extend(self._duplicate_sink(mask, self._prefix(slot)))
        if teed and shown:
            sinks.append(ConsoleSink(console_fd, self._prefix(slot)))
        elif shown and not redirected:
            if not sinks:
                return None  # plain inherited stream
            sinks.append(ConsoleSink(console_fd))
        if not sinks:
            return os.open(os.devnull, os.O_WRONLY)
        read_fd, write_fd = os.pipe()
        self._pumps.append(await pump_pipe(read_fd, sinks))
        return write_fd

    def _duplicate_sink(self, mask: StdMask, prefix: bytes) -> list[LineSink]:
        config = self.job.config
        filters = (
            config.duplicate_stdout_filters
            if mask is StdMask.OUT
            else config.duplicate_stderr_filters
        )
        if not filters or self.dir is None:
            return []
        name = "filtered_stdout.log" if mask is StdMask.OUT else "filtered_stderr.log"
        return [FilteredFileSink(str(self.dir / name), filters, prefix)]

    def _payload(self, slot: Slot) -> str | None:
        if self.job.entrypoint.kind is not EntrypointKind.CALLABLE:
            return None
        path = os.path.join(slot.work_dir, "call.pickle")
        args = substitute_local_rank_any(self.job.call_args, slot.local_rank)
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        with open(path, "wb") as out:
            pickle.dump({"sys_path": sys.path, "main_path": main}, out)
            pickle.dump(
                (self.job.entrypoint.function, args, os.path.join(slot.work_dir, "result.pickle")),
                out,
            )
        return path

    def _scratch(self) -> str:
        return tempfile.mkdtemp(prefix="rallypoint_call_")

    async def drain(self) -> None:
        """Wait (briefly) until every pipe has been read to its end."""
        pending = [p.finished for p in self._pumps]
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_SECONDS)

    def failure(
        self, worker: WorkerProcess, exited_wall: float, exited_mono: float
    ) -> WorkerFailure:
        """What the summary says about ``worker``."""
        slot = self.slots[worker.request.local_rank]
        assert worker.status is not None
        path = slot.files.path("error.json")
        content = read_error_file(path) if path else None
        oom = worker.status.signal == signal.SIGKILL and killed_by_oom(
            worker.pid, self.oom_count_at_start
        )
        return WorkerFailure.build(
            (slot.local_rank, slot.global_rank, worker.pid),
            worker.status,
            (exited_wall, exited_mono - self.started_at),
            path,
            content,
            slot.tail.text(),
            oom,
        )

    def return_values(self) -> dict[int, object]:
        """Per global rank: a callable's return value, or None for programs."""
        values: dict[int, object] = {}
        for slot in self.slots.values():
            values[slot.global_rank] = self._result_of(slot)
        return values

    def _result_of(self, slot: Slot) -> object:
        if self.job.entrypoint.kind is not EntrypointKind.CALLABLE:
            return None
        with open(os.path.join(slot.work_dir, "result.pickle"), "rb") as handle:
            return pickle.load(handle)  # noqa: S301 - written by our own child
