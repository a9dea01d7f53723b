"""Who may hold a socket of the store: caps on connections, and refusals logged sparingly.

Design note
-----------
An unauthenticated peer costs a file descriptor, a ``StoreConnection`` and at most one
small frame (the hello, ``Limits.max_hello`` bytes). ``Admission`` bounds both counts:

* at most ``max_connections`` sockets in all; one more is closed at once, before the
  challenge. The default leaves room below ``RLIMIT_NOFILE``, so ``accept()`` never fails
  with EMFILE (which asyncio would log with a traceback, once per second, and which would
  keep honest clients out);
* at most ``max_handshakes`` of them still in the handshake. When one more arrives, the
  *oldest* handshake is closed, not the newcomer: an honest client needs one round trip to
  authenticate, so a flood of idle connections cannot keep it out, while refusing
  newcomers would let a few hundred idle sockets lock every new agent out of the job.

Every refusal goes through one ``RefusalLog``: the first in an interval is logged as it
happens, later ones only as a count in the next line, so a flood costs a line per interval,
never a line (or a traceback) per connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from rallypoint.store.clock import MonotonicClock

__all__ = ["Admission", "AdmissionLimits", "RefusalLog"]

logger = logging.getLogger(__name__)


class _Closable(Protocol):
    peer: str

    def abort(self) -> None:
        """Close the socket at once."""


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """How many sockets the server holds.

    Attributes:
        max_connections: sockets open at once, authenticated or not.
        max_handshakes: of those, sockets that have not authenticated yet.
    """

    max_connections: int
    max_handshakes: int


class RefusalLog:
    """Logs refused peers: the first at once, then one summary line per ``interval``.

    Args:
        clock: the time source.
        interval: seconds between two lines.
    """

    def __init__(self, clock: MonotonicClock, interval: float = 10.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: float | None = None
        self._unlogged = 0

    def refused(self, peer: str, reason: str) -> None:
        """Record one refusal, logging it unless a line was written less than a moment ago."""
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self._interval:
            self._unlogged += 1
            return
        if self._unlogged and self._last is not None:
            logger.warning(
                "store refused %s: %s (and %d more peers in the last %.0f s)",
                peer,
                reason,
                self._unlogged,
                now - self._last,
            )
        else:
            logger.warning("store refused %s: %s", peer, reason)
        self._last = now
        self._unlogged = 0


class Admission:
    """Counts open and handshaking sockets and enforces ``AdmissionLimits``.

    Args:
        limits: the caps.
        log: where refusals are reported.
    """

    def __init__(self, limits: AdmissionLimits, log: RefusalLog) -> None:
        self._limits = limits
        self._log = log
        self._open = 0
        self._handshaking: dict[_Closable, None] = {}  # insertion order: oldest first

    @property
    def handshaking(self) -> int:
        """Sockets that have not authenticated yet."""
        return len(self._handshaking)

    def admit(self, conn: _Closable) -> bool:
        """A socket was accepted: True to keep it (in the handshake), False to close it."""
        if self._open >= self._limits.max_connections:
            self._log.refused(conn.peer, f"{self._open} connections open (the limit)")
            return False
        if len(self._handshaking) >= self._limits.max_handshakes:
            oldest = next(iter(self._handshaking))
            self._log.refused(
                oldest.peer, f"{len(self._handshaking)} handshakes pending (the limit)"
            )
            self.handshake_over(oldest)
            oldest.abort()
        self._open += 1
        self._handshaking[conn] = None
        return True

    def refused(self, peer: str, reason: str) -> None:
        """Log a refused or dropped peer (through the ``RefusalLog``)."""
        self._log.refused(peer, reason)

    def handshake_over(self, conn: _Closable) -> None:
        """The socket's handshake is over (it authenticated or is closing)."""
        self._handshaking.pop(conn, None)

    def closed(self, conn: _Closable) -> None:
        """An admitted socket is gone."""
        self.handshake_over(conn)
        self._open -= 1
