"""Who failed first, and what it said.

The culprit is the first worker whose exit the agent saw, timed to the
sub-second from the exit event itself (torchrun compares whole-second
timestamps and also counts the ranks it stopped itself as failures). Ranks the
agent stopped are kept apart in ``stopped``. A worker's words come from its
error file when it wrote one, else from the last lines of its stderr, which
the agent always keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from rallypoint.failures.error_file import ErrorFileContent
from rallypoint.workers.exit_status import ExitStatus


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """One worker's end, as the summary shows it."""

    local_rank: int
    global_rank: int
    pid: int
    status: ExitStatus
    exited_at: float  # wall-clock seconds, sub-second precision
    runtime: float  # seconds from spawn to exit
    error_file: str  # path of the error file, "" when it wrote none
    message: str
    traceback: str  # from the error file, else the tail of stderr
    oom_killed: bool = False  # a SIGKILL the kernel's OOM killer sent

    @classmethod
    def build(
        cls,
        place: tuple[int, int, int],
        status: ExitStatus,
        times: tuple[float, float],
        error_file: str,
        content: ErrorFileContent | None,
        stderr_tail: str,
        oom_killed: bool = False,
        cause: str = "",
    ) -> WorkerFailure:
        """Combine what the agent saw with what the worker left behind.

        Args:
            place: (local rank, global rank, pid).
            status: how it ended.
            times: (exit wall time, runtime in seconds).
            error_file: where its error file would be.
            content: the parsed error file, if any.
            stderr_tail: the last lines of its stderr.
            oom_killed: whether the kernel's OOM killer sent its SIGKILL.
            cause: why the agent itself killed it (an elastic timer), which becomes the message.
        """
        local_rank, global_rank, pid = place
        if content is not None:
            message, text = content.message, content.traceback or content.message
        else:
            error_file, message = "", _message_from(status, pid, stderr_tail)
            text = stderr_tail
        if cause:
            message = cause
        return cls(
            local_rank, global_rank, pid, status, *times, error_file, message, text, oom_killed
        )


def _message_from(status: ExitStatus, pid: int, tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    if status.signal is not None:
        return f"Signal {int(status.signal)} ({status.signal.name}) received by PID {pid}"
    return f"{status.describe()} with no output on stderr"


def timer_message(scope: str, overdue: float) -> str:
    """Why the agent killed a worker whose elastic timer ran out."""
    return f"elastic timer {scope!r} expired: killed {overdue:.3f} s past its deadline"


@dataclass(frozen=True, slots=True)
class FailureReport:
    """Everything the failure summary says.

    Attributes:
        name: the entrypoint name torchrun puts in its title.
        host: this node's name.
        culprit: the first failure in time.
        failures: every real failure (the culprit included), in time order.
        stopped: workers the agent stopped itself after the culprit failed.
    """

    name: str
    host: str
    culprit: WorkerFailure
    failures: tuple[WorkerFailure, ...]
    stopped: tuple[WorkerFailure, ...] = ()

    @classmethod
    def from_failures(
        cls, name: str, host: str, failures: list[WorkerFailure], stopped: list[WorkerFailure]
    ) -> FailureReport:
        """Order the failures in time; the first is the culprit."""
        ordered = tuple(sorted(failures, key=lambda f: f.exited_at))
        return cls(
            name, host, ordered[0], ordered, tuple(sorted(stopped, key=lambda f: f.global_rank))
        )

    @property
    def headline(self) -> str:
        """One line a person can act on."""
        c = self.culprit
        how = c.status.describe()
        if c.oom_killed:
            how += " (killed by the kernel's OOM killer)"
        return (
            f"rank {c.global_rank} (local {c.local_rank}) on {self.host} failed first: "
            f"{how} after {c.runtime:.1f} s: {c.message}"
        )

    def to_json(self) -> dict[str, object]:
        """The report as JSON-ready data."""

        def one(f: WorkerFailure) -> dict[str, object]:
            return {
                "rank": f.global_rank,
                "local_rank": f.local_rank,
                "pid": f.pid,
                "exitcode": f.status.torch_exitcode,
                "exit": f.status.describe(),
                "exited_at": f.exited_at,
                "runtime": f.runtime,
                "error_file": f.error_file,
                "message": f.message,
                "traceback": f.traceback,
            }

        return {
            "headline": self.headline,
            "name": self.name,
            "host": self.host,
            "culprit": one(self.culprit),
            "failures": [one(f) for f in self.failures],
            "stopped": [one(f) for f in self.stopped],
        }
