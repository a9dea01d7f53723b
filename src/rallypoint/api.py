"""The Python API: launch a script, program or function on every local rank.

The shape of ``torch.distributed.launcher.api``: ``launch(config, entrypoint,
*args)`` or ``elastic_launch(config, entrypoint)(*args)`` return the per-rank
results of this node's workers (a function's return values; None for
programs), or raise :class:`~rallypoint.errors.ChildFailedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

from rallypoint.agent.job import Job
from rallypoint.agent.supervisor import Supervisor
from rallypoint.config import DEFAULT_SIGNALS, Entrypoint, EntrypointKind, LaunchConfig
from rallypoint.ids import temp_root


def _entrypoint(entrypoint: Callable[..., object] | str, args: tuple[object, ...]) -> Entrypoint:
    if isinstance(entrypoint, str):
        return Entrypoint(EntrypointKind.BINARY, entrypoint, tuple(str(a) for a in args))
    return Entrypoint(
        EntrypointKind.CALLABLE, getattr(entrypoint, "__name__", "function"), function=entrypoint
    )


def launch(
    config: LaunchConfig, entrypoint: Callable[..., object] | str, *args: object
) -> dict[int, object]:
    """Run ``entrypoint`` on this node's ranks and return results by global rank.

    Raises:
        ChildFailedError: when workers failed and the restart budget is spent.
        RendezvousError: when the nodes cannot agree on a round.
    """
    if not config.run_id:
        config = dataclasses.replace(config, run_id=str(uuid.uuid4().int))
    base = dict(os.environ)
    base["TORCHELASTIC_SIGNALS_TO_HANDLE"] = config.signals_to_handle or DEFAULT_SIGNALS
    job = Job(
        config,
        _entrypoint(entrypoint, args),
        base,
        host=config.local_addr or socket.getfqdn(),
        call_args=args,
        temp_root=temp_root(base),
    )
    with _handlers_kept(config.handled_signals):
        result = asyncio.run(Supervisor(job).run())
    return dict(result.return_values)


@contextlib.contextmanager
def _handlers_kept(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """Put back the caller's handlers of ``signals`` once the launch is over.

    The agent's loop installs its own handlers for the handled signals and, on
    removing them, leaves the defaults; the caller's handlers are restored here.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # the agent installs no handler outside the main thread
        return
    found = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in found.items():
            if handler is not None:  # None: installed from C, cannot be put back
                signal.signal(sig, handler)


class elastic_launch:
    """``elastic_launch(config, entrypoint)(*args)``, as in torch."""

    def __init__(self, config: LaunchConfig, entrypoint: Callable[..., object] | str) -> None:
        self._config = config
        self._entrypoint = entrypoint

    def __call__(self, *args: object) -> dict[int, object]:
        """Launch with ``args``."""
        return launch(self._config, self._entrypoint, *args)
