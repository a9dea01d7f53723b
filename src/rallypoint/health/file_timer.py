"""torch's elastic file timers, as a pure deadline table.

Design note: a worker that uses ``torch.distributed.elastic.timer`` with a
``FileTimerClient`` writes one JSON line per request into the named pipe named
by ``TORCHELASTIC_TIMER_FILE``: ``{"version": 1, "pid": ..., "scope_id": ...,
"expiration_time": ..., "signal": ...}``, where ``expiration_time`` is a wall-clock
deadline (``time.time() + after``) and a negative one releases the scope. This
module parses those lines and keeps the deadlines per ``(pid, scope)``; it does
no I/O and reads no clock (the reader, :mod:`.timer_pipe`, passes the time in).
When deadlines pass, each pid yields one :class:`Expiry`: the earliest of its
expired timers that asked for a signal, as torch's ``FileTimerServer`` picks it;
a pid whose expired timers asked for none is reported with signal 0 and spared.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerRequest:
    """One request from a worker: acquire (or, with a negative deadline, release) a scope."""

    pid: int
    scope: str
    deadline: float  # wall-clock seconds; negative: release
    signal: int = 0

    @property
    def releases(self) -> bool:
        """True for a release of ``scope``."""
        return self.deadline < 0


@dataclass(frozen=True, slots=True)
class Expiry:
    """A worker process whose timer ran out."""

    pid: int
    scope: str
    signal: int  # what it asked to be killed with; 0: do not kill
    deadline: float
    seen_at: float  # wall-clock time the expiry was found

    @property
    def overdue(self) -> float:
        """Seconds past the deadline when it was found."""
        return self.seen_at - self.deadline


def parse_request(line: bytes) -> TimerRequest:
    """One line of the pipe -> the request.

    Raises:
        ValueError: the line is not a FileTimerRequest.
    """
    import json  # only jobs with timers pay for it

    try:
        data = json.loads(line)
        request = TimerRequest(
            int(data["pid"]),
            str(data["scope_id"]),
            float(data["expiration_time"]),
            int(data.get("signal", 0)),
        )
    except (TypeError, KeyError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not a timer request: {line[:200]!r}") from exc
    return request


class DeadlineTable:
    """The live timers, by ``(pid, scope)``."""

    def __init__(self) -> None:
        self._timers: dict[tuple[int, str], TimerRequest] = {}

    def apply(self, request: TimerRequest) -> None:
        """Acquire or release what ``request`` names (a second acquire replaces the first)."""
        key = (request.pid, request.scope)
        if request.releases:
            self._timers.pop(key, None)
        else:
            self._timers[key] = request

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None when no timer runs."""
        return min((t.deadline for t in self._timers.values()), default=None)

    def expire(self, now: float) -> list[Expiry]:
        """Remove every timer whose deadline is ``now`` or earlier; one expiry per pid."""
        expired = sorted(
            (t for t in self._timers.values() if t.deadline <= now), key=lambda t: t.deadline
        )
        chosen: dict[int, TimerRequest] = {}
        for timer in expired:
            del self._timers[(timer.pid, timer.scope)]
            first = chosen.get(timer.pid)
            if first is None or (first.signal <= 0 < timer.signal):
                chosen[timer.pid] = timer
        return [Expiry(t.pid, t.scope, max(t.signal, 0), t.deadline, now) for t in chosen.values()]

    def forget(self, pid: int) -> None:
        """Drop every timer of ``pid`` (it has ended)."""
        for key in [k for k in self._timers if k[0] == pid]:
            del self._timers[key]

    def __len__(self) -> int:
        return len(self._timers)
