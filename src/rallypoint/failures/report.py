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
from rallypoint.hangs.verdict import Group, Verdict, VerdictKind
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
    stack: str = ""  # its Python stack at a fatal signal, or when it was found hung
    hung: bool = False  # the agent stopped it as the culprit of a hang

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
        *,
        stack: str = "",
        hung: bool = False,
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
            cause: why the agent itself killed it (an elastic timer, a hang): the message.
            stack: its Python stack at a fatal signal or at the hang.
            hung: whether the agent stopped it as a hang's culprit.
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
            local_rank,
            global_rank,
            pid,
            status,
            *times,
            error_file,
            message,
            text,
            oom_killed,
            stack,
            hung,
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


def _ranks(ranks: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, ranks[:8])) + (f" and {len(ranks) - 8} more" if ranks[8:] else "")
    return f"rank {shown}" if len(ranks) == 1 else f"ranks {shown}"


def _place(group: Group) -> str:
    where = group.where
    what = group.collective or (where.function if where else "?")
    return f"in {what} at {where.where()}" if where else f"in {what}"


def hang_message(verdict: Verdict, rank: int) -> str:
    """Why the agent stopped ``rank``, one of ``verdict``'s culprits (or a stuck rank)."""
    mine = next((g for g in (*verdict.culprits, *verdict.waiting) if rank in g.ranks), None)
    others = [g for g in (*verdict.culprits, *verdict.waiting) if g is not mine]
    head = f"hung: stuck {mine.unchanged_for:.0f} s {_place(mine)}" if mine else "hung"
    if verdict.kind is VerdictKind.ALL_WAITING:
        return f"{head}; every rank waits in the same collective (the cause is elsewhere)"
    if verdict.kind is VerdictKind.MISMATCH:
        head += " (mismatched collectives)"
    if not others:
        return head
    return head + "; " + "; ".join(f"{_ranks(g.ranks)} {_place(g)}" for g in others)


def hang_headline(rank: int, local_rank: int, host: str, message: str) -> str:
    """The summary's first line for a rank the agent stopped as hung."""
    return f"rank {rank} (local {local_rank}) on {host} {message}"


def remote_culprit(culprits: tuple[int, ...], message: str) -> str:
    """A hang whose culprits all run on other nodes: theirs stop them."""
    return f"{_ranks(culprits)} on another node {message} (that node stops it)"


def hang_warning(hang_ranks: tuple[int, ...], verdict: Verdict, stacks: dict[int, str]) -> str:
    """The report-only warning: who looks hung, and every distinct stack once with its ranks."""
    detail = hang_message(verdict, hang_ranks[0]).removeprefix("hung: ")
    verb = "looks" if len(hang_ranks) == 1 else "look"
    lines = [
        f"{_ranks(hang_ranks)} {verb} hung: {detail} "
        "(reported only; with --hang-timeout the job would stop here)"
    ]
    by_text: dict[str, list[int]] = {}
    for rank, text in sorted(stacks.items()):
        by_text.setdefault(text, []).append(rank)
    for text, ranks in by_text.items():
        lines += [f"{_ranks(tuple(ranks))}:", text]
    return "\n".join(lines)


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
    elsewhere: str = ""  # the headline of a hang another node announced for this round

    @classmethod
    def from_failures(
        cls,
        name: str,
        host: str,
        failures: list[WorkerFailure],
        stopped: list[WorkerFailure],
        elsewhere: str = "",
    ) -> FailureReport:
        """Order the failures in time; the first is the culprit."""
        ordered = tuple(sorted(failures, key=lambda f: f.exited_at))
        by_rank = tuple(sorted(stopped, key=lambda f: f.global_rank))
        return cls(name, host, ordered[0], ordered, by_rank, elsewhere)

    @property
    def headline(self) -> str:
        """One line a person can act on."""
        c = self.culprit
        if c.hung:
            return hang_headline(c.global_rank, c.local_rank, self.host, c.message)
        how = c.status.describe()
        if c.oom_killed:
            how += " (killed by the kernel's OOM killer)"
        if self.elsewhere:
            here = f"rank {c.global_rank} (local {c.local_rank}) on {self.host}"
            return f"{self.elsewhere}; {here} failed after it: {how}"
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
                "stack": f.stack,
                "hung": f.hung,
            }

        return {
            "headline": self.headline,
            "name": self.name,
            "host": self.host,
            "culprit": one(self.culprit),
            "failures": [one(f) for f in self.failures],
            "stopped": [one(f) for f in self.stopped],
        }
