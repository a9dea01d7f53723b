"""The exception tree of rallypoint.

::

    RallypointError                  base of everything rallypoint raises on purpose
    ├── UsageError                   bad command line or configuration (exit code 2)
    │   └── ConfigError              a value parsed but makes no sense (same exit code)
    ├── LaunchError                  the job could not be started (exit code 1)
    ├── RendezvousError              the nodes could not agree (exit code 1)
    │   ├── RendezvousTimeoutError   not enough nodes joined within the join timeout
    │   ├── RendezvousClosedError    the job is over (ended or failed on another node)
    │   └── RendezvousLostError      the store is gone or this node was cut off
    ├── ChildFailedError             workers failed and the restart budget is spent (exit 1)
    └── SignalReceived               a handled signal ended the job (exit 1, or death by it)

Foreign exceptions (OSError from spawning, JSON errors from error files) are
translated once, where they enter, with ``raise ... from exc``.

This module is the bottom of the package: it imports no other part of
rallypoint (``docs/architecture.md``), so every part can raise these.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class FailureSummary(Protocol):
    """The least a failure report has (``rallypoint.failures.report.FailureReport``)."""

    @property
    def headline(self) -> str:
        """One line naming the culprit and how it ended."""
        ...


R = TypeVar("R", bound=FailureSummary, covariant=True)


class RallypointError(Exception):
    """Base class of every error rallypoint raises on purpose."""


class UsageError(RallypointError):
    """The command line or configuration is wrong; the message names what and why."""


class ConfigError(UsageError):
    """A value parsed but is not acceptable (e.g. ``--nnodes=3:2``)."""


class LaunchError(RallypointError):
    """The job could not be started (e.g. the script does not exist)."""


class RendezvousError(RallypointError):
    """The nodes of the job could not agree on a round."""


class RendezvousTimeoutError(RendezvousError):
    """Not enough nodes joined before the join timeout."""


class RendezvousClosedError(RendezvousError):
    """The job is over: it ended, or failed, on another node."""


class RendezvousLostError(RendezvousError):
    """The rendezvous store cannot be reached any more, or this node's lease ended."""


class ChildFailedError(RallypointError, Generic[R]):
    """Workers failed and no restart is left.

    Attributes:
        report: the failure report naming the culprit and what it said.
    """

    def __init__(self, report: R) -> None:
        super().__init__(report.headline)
        self.report: R = report


class SignalReceived(RallypointError):
    """A handled signal (TERM, INT, ...) ended the job.

    Attributes:
        signum: the signal number received.
        before_workers: True when no worker had been started yet.
    """

    def __init__(self, signum: int, before_workers: bool) -> None:
        super().__init__(f"received signal {signum}")
        self.signum = signum
        self.before_workers = before_workers
