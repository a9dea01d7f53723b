"""The job one agent runs, the events its loop consumes, and what it returns.

The job and the events are :func:`~rallypoint.values.value` classes: this module is
imported before a single-node job's first workers are spawned, where each
dataclass would cost a fraction of a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rallypoint.config import Entrypoint, LaunchConfig
from rallypoint.values import value
from rallypoint.workers.process import WorkerProcess


@value
class Job:
    """Everything one agent needs: the config, what to run, the launcher's environment.

    Attributes:
        config: the validated launch configuration.
        entrypoint: what each worker runs.
        base_env: the environment every worker inherits before its own variables.
        call_args: positional arguments of a callable entrypoint.
        host: this node's name in reports (torchrun uses the FQDN).
    """

    config: LaunchConfig
    entrypoint: Entrypoint
    base_env: Mapping[str, str]
    host: str
    call_args: tuple[object, ...] = ()
    temp_root: str = "/tmp"  # where temporary folders go ($TMPDIR as the launcher saw it)


@value
class WorkerExited:
    """Event: a worker of attempt ``attempt`` ended."""

    attempt: int
    worker: WorkerProcess
    at_monotonic: float
    at_wall: float


@value
class SignalArrived:
    """Event: the agent received a handled signal."""

    signum: int


@value
class RendezvousChanged:
    """Event: the rendezvous store changed (a node left, joined or failed)."""


AgentEvent = WorkerExited | SignalArrived | RendezvousChanged


@dataclass(frozen=True, slots=True)
class RunResult:
    """A successful run: return values by global rank (None for scripts)."""

    return_values: Mapping[int, object] = field(default_factory=dict)
    restarts: int = 0
