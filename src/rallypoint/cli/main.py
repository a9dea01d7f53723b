"""Parse, configure, run, and turn the outcome into torchrun's exit code.

Exit codes (contract §3.4): 0 success; 1 workers failed, a handled signal
after the workers started, or the job could not start; 2 bad input (always
one line, never a traceback). A handled signal that arrives before any worker
started ends the launcher by that same signal, as torchrun's death does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

from rallypoint.agent.job import Job
from rallypoint.agent.prestart import prestart
from rallypoint.cli import output
from rallypoint.cli.parser import parse_args
from rallypoint.cli.settings import Launch, build_launch
from rallypoint.clock import SystemClock
from rallypoint.config import LaunchConfig
from rallypoint.devices import SystemDevices
from rallypoint.errors import (
    ChildFailedError,
    LaunchError,
    RendezvousError,
    SignalReceived,
    UsageError,
)
from rallypoint.ids import temp_root
from rallypoint.signals import DEFAULT_SIGNALS


def configure(argv: Sequence[str], environ: Mapping[str, str]) -> Launch:
    """The launch ``argv`` and ``environ`` ask for, with nothing started.

    Raises:
        UsageError: in one line, naming the flag or variable.
    """
    return build_launch(parse_args(argv, environ), environ, SystemDevices(environ))


def _die_by(signum: int) -> int:
    """End the process by ``signum`` itself, as an unhandled signal would."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum  # only reached if the signal is blocked


def _settle_signals(config: LaunchConfig, early: list[int]) -> None:
    """Now that ``--signals-to-handle`` is known: trap those, let the others act as usual.

    Until the event loop takes over, a trapped signal is only remembered in ``early``.
    One that arrived before but is not to be handled ends the launcher as it would have.
    """
    handled = {int(s) for s in (*config.handled_signals, *config.notice_signals)}
    with contextlib.suppress(ValueError):  # not the main thread: nothing to trap
        for signum in handled:
            signal.signal(signum, lambda number, _frame: early.append(number))
        for sig in DEFAULT_SIGNALS:
            if int(sig) not in handled:
                signal.signal(
                    sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler
                )
    for signum in list(early):
        if signum not in handled:
            _die_by(signum)


def _dry_run(launch: Launch, environ: Mapping[str, str]) -> int:
    """Print what the launch would do; start nothing."""
    from rallypoint.cli.dryrun import plan

    try:
        found = plan(launch, _host(launch), environ)
    except UsageError as exc:
        output.usage_error(str(exc))
        return 2
    output.dry_run(found)
    return 0


def _host(launch: Launch) -> str:
    return launch.config.local_addr or socket.getfqdn()


def _run(launch: Launch, early: list[int]) -> int:
    job = Job(
        launch.config,
        launch.entrypoint,
        launch.worker_base_env,
        host=_host(launch),
        temp_root=temp_root(launch.worker_base_env),
    )
    clock = SystemClock()
    started = prestart(job, clock, early)  # before the heavy imports below, on purpose
    import asyncio

    from rallypoint.agent.supervisor import Supervisor

    supervisor = Supervisor(job, clock, early_signals=early, prestarted=started)
    try:
        asyncio.run(supervisor.run())
    except ChildFailedError as failure:
        output.notices(supervisor.notices)
        print(output.format_summary(failure.report, supervisor.report_path), file=sys.stderr)
        return 1
    except SignalReceived as received:
        if received.before_workers:
            return _die_by(received.signum)
        output.notices(supervisor.notices)
        output.signal_exit(signal.Signals(received.signum).name)
        return 1
    output.notices(supervisor.notices)
    return 0


def is_status_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``rallypoint status``: ``status`` first, and no such file here."""
    return bool(argv) and argv[0] == "status" and not os.path.exists("status")


def main(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    early_signals: list[int] | None = None,
) -> int:
    """Run the launcher with ``argv`` (no program name); return the exit code."""
    environ = dict(os.environ) if environ is None else environ
    early = early_signals if early_signals is not None else []
    output.setup_logging(environ)
    if is_status_command(argv):
        from rallypoint.cli.status import status_main

        return status_main(argv[1:], environ)
    try:
        launch = configure(argv, environ)
    except UsageError as exc:
        output.usage_error(str(exc))
        return 2
    if launch.derived:
        output.slurm_derived(launch.derived)
    if launch.dry_run:
        return _dry_run(launch, environ)
    _settle_signals(launch.config, early)
    if launch.omp_threads_defaulted:
        output.omp_warning()
    try:
        return _run(launch, early)
    except UsageError as exc:  # a setting only the rendezvous reads, e.g. --rdzv-conf join_timeout
        output.usage_error(str(exc))
        return 2
    except (LaunchError, RendezvousError) as exc:
        output.launch_error(str(exc))
        return 1
