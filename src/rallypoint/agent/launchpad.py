"""Prepare and spawn one attempt's workers, without an event loop.

Design note: start-up time is a product feature. A single-node launch knows
everything its first workers need as soon as the command line is parsed, so
the launcher spawns them from here, before it imports asyncio and the rest of
the agent; those imports then overlap the workers' own interpreter start-up.
The event loop later adopts the running workers: their pidfds and pipes are
attached then (the kernel keeps exits and output until someone reads them).

Stream wiring, per worker and stream (contract §6, with our fixes):
- stdout neither redirected, tee'd nor filtered: inherited (no cost at all);
- otherwise a pipe pumped to the file (redirect, tee, or a filtered rank whose
  output torchrun would drop) and, when tee'd and shown, to the console with a
  ``[role<local_rank>]:`` prefix;
- stderr is always read by the agent, so that its last lines reach the failure
  summary whatever the settings: through a pseudo-terminal of the same size
  when it would be the user's terminal under torchrun (plain, and the
  launcher's stderr is a terminal), else through a pipe;
- stdin is inherited, as under torchrun (``breakpoint()`` reads the user's terminal).
"""

from __future__ import annotations

import os
import pickle  # the callable hand-off to our own local child; see function_child
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rallypoint.agent.job import Job
from rallypoint.agent.worker_env import WorkerPlace, worker_env
from rallypoint.clock import Clock
from rallypoint.config import EntrypointKind, StdMask
from rallypoint.errors import LaunchError
from rallypoint.failures.oom import oom_kill_count
from rallypoint.health import ENABLE_VARIABLE
from rallypoint.ids import private_dir
from rallypoint.logs.layout import WorkerFiles
from rallypoint.logs.sinks import (
    ConsoleSink,
    FileSink,
    FilteredFileSink,
    LineSink,
    Stream,
    TailSink,
)
from rallypoint.logs.terminal import is_terminal, open_pty
from rallypoint.logs.writer import Consoles
from rallypoint.rendezvous.result import RendezvousResult
from rallypoint.workers.command import StackChannel, substitute_local_rank_any, worker_argv
from rallypoint.workers.guardian import Guardian
from rallypoint.workers.process import SpawnRequest, WorkerProcess

if TYPE_CHECKING:
    from rallypoint.agent.standbys import StandbyPool
    from rallypoint.health.timer_pipe import TimerPipe
    from rallypoint.workers.stack_pipes import StackPipes

DEFAULT_PREFIX = "[${role_name}${local_rank}]:"


@dataclass(frozen=True, slots=True)
class Slot:
    """What an attempt keeps about one local rank."""

    local_rank: int
    global_rank: int
    files: WorkerFiles
    tail: TailSink
    work_dir: str  # where a callable's payload and result live
    out_tail: TailSink = field(default_factory=lambda: TailSink(1))  # stdout, when read


@dataclass(slots=True)
class Prepared:
    """One attempt's workers, ready to spawn or spawned."""

    slots: dict[int, Slot] = field(default_factory=dict)
    requests: list[SpawnRequest] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)  # what the agent reads
    consoles: Consoles = field(default_factory=Consoles)
    workers: list[WorkerProcess] = field(default_factory=list)
    oom_count_at_start: int | None = None
    started_at: float = 0.0  # monotonic time of the spawn
    started_wall: float = 0.0  # the same, on the wall clock (for the event log)
    timers: TimerPipe | None = None  # torch's elastic file timers, when enabled
    stacks: StackPipes | None = None  # the Python workers' stack channels


class Launchpad:
    """Builds the environment, command and streams of each local worker, and spawns them."""

    def __init__(
        self, job: Job, rdzv: RendezvousResult, restart_count: int, attempt_dir: Path | None
    ) -> None:
        self.job, self.rdzv, self.restart_count, self.dir = job, rdzv, restart_count, attempt_dir
        self.prepared = Prepared(oom_count_at_start=oom_kill_count())

    def launch(
        self, guardian: Guardian, clock: Clock, standbys: StandbyPool | None = None
    ) -> Prepared:
        """Prepare every local worker and spawn it; the parent's pipe ends are closed after.

        A local rank with a standby in ``standbys`` gets it instead of a fresh process.

        Raises:
            LaunchError: a worker, or the timer pipe, cannot be made.
        """
        self.prepared.timers = self._timer_pipe()
        self.prepared.stacks = self._stack_pipes()
        for local_rank in range(self.job.config.nproc_per_node):
            self.prepared.requests.append(self._prepare(local_rank))
        self.prepared.started_at = clock.monotonic()
        self.prepared.started_wall = clock.wall()
        try:
            for request in self.prepared.requests:
                worker = standbys.take(request) if standbys is not None else None
                worker = worker or WorkerProcess.spawn(request)
                guardian.watch(worker.pid, request.env)
                self.prepared.workers.append(worker)
        except BaseException:
            if self.prepared.timers is not None:
                self.prepared.timers.close()
            if self.prepared.stacks is not None:
                self.prepared.stacks.close()
            raise
        finally:
            for request in self.prepared.requests:
                for fd in (request.stdout, request.stderr, *request.pass_fds):
                    if fd is not None:
                        os.close(fd)
        return self.prepared

    def _timer_pipe(self) -> TimerPipe | None:
        if self.job.base_env.get(ENABLE_VARIABLE) != "1":
            return None
        from rallypoint.health.timer_pipe import TimerPipe, timer_file  # only when enabled

        path = timer_file(self.job.base_env, self.job.temp_root)
        if path is None:
            return None
        try:
            return TimerPipe(path)
        except OSError as exc:
            raise LaunchError(f"cannot make the timer pipe {path}: {exc.strerror}") from exc

    def _stack_pipes(self) -> StackPipes | None:
        if self.job.entrypoint.kind is EntrypointKind.BINARY:
            return None  # --no-python: no bootstrap, no stacks
        from rallypoint.workers.stack_pipes import StackPipes

        return StackPipes(self.job.config.stack_period)

    def _channel(self, slot: Slot) -> StackChannel | None:
        if self.prepared.stacks is None:
            return None
        return self.prepared.stacks.open(slot.local_rank, slot.global_rank)

    def _prepare(self, local_rank: int) -> SpawnRequest:
        files = WorkerFiles.create(self.dir, local_rank)
        work_dir = (
            str(files.folder)
            if files.folder is not None
            else private_dir(self.job.temp_root, "rallypoint_call_")
        )
        slot = Slot(local_rank, self.rdzv.base_rank + local_rank, files, TailSink(), work_dir)
        self.prepared.slots[local_rank] = slot
        timers = self.prepared.timers
        place = WorkerPlace(
            local_rank, self.restart_count, files.path("error.json"), timers.path if timers else ""
        )
        env = worker_env(self.job.config, self.rdzv, place, self.job.base_env)
        channel = self._channel(slot)
        argv = worker_argv(
            self.job.entrypoint, local_rank, self.job.base_env, self._payload(slot), channel
        )
        stdout = self._stream(slot, StdMask.OUT, 1, [])
        stderr = self._stream(slot, StdMask.ERR, 2, [slot.tail])
        fds = (channel.fd,) if channel else ()
        return SpawnRequest(local_rank, argv, env, stdout, stderr, fds)

    def _prefix(self, slot: Slot) -> bytes:
        template = self.job.config.log_line_prefix_template or DEFAULT_PREFIX
        return (
            string.Template(template)
            .safe_substitute(
                role_name=self.job.config.role, rank=slot.global_rank, local_rank=slot.local_rank
            )
            .encode()
        )

    def _stream(
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
        plain = shown and not redirected and not teed
        if teed and shown:
            sinks.append(ConsoleSink(self.prepared.consoles.writer(console_fd), self._prefix(slot)))
        elif plain:
            if not sinks:
                return None  # plain inherited stream
            sinks.append(ConsoleSink(self.prepared.consoles.writer(console_fd)))
        if not sinks:
            return os.open(os.devnull, os.O_WRONLY)
        if mask is StdMask.OUT:
            sinks.append(slot.out_tail)  # read anyway: its last line for rallypoint status
        if plain and is_terminal(console_fd):
            read_fd, write_fd = open_pty(console_fd)
            self.prepared.streams.append(Stream(read_fd, tuple(sinks), console_fd))
            return write_fd
        read_fd, write_fd = os.pipe()
        self.prepared.streams.append(Stream(read_fd, tuple(sinks)))
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
