"""Command line -> :class:`RawArgs`, built from the flag table.

The parser reads argv and an explicit environment mapping (never
``os.environ`` directly) and has no side effects. Every problem becomes a
:class:`~rallypoint.errors.UsageError` carrying one line of text; printing and
the exit code are the caller's business.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import NoReturn

from rallypoint.cli.flags import FLAGS, Flag, FlagKind
from rallypoint.errors import UsageError

PROG = "rallypoint"


@dataclass(frozen=True, slots=True)
class RawArgs:
    """The command line as typed values, before any validation of meaning."""

    nnodes: str
    nproc_per_node: str
    rdzv_backend: str
    rdzv_endpoint: str
    rdzv_id: str
    rdzv_conf: str
    standalone: bool
    max_restarts: int
    monitor_interval: float
    start_method: str
    event_log_handler: str
    role: str
    module: bool
    no_python: bool
    run_path: bool
    log_dir: str | None
    redirects: str
    tee: str
    local_ranks_filter: str
    duplicate_stdout_filters: str | None
    duplicate_stderr_filters: str | None
    node_rank: int
    master_addr: str
    master_port: int | None
    local_addr: str | None
    logs_specs: str | None
    numa_binding: str | None
    signals_to_handle: str
    shutdown_timeout: int | None
    virtual_local_rank: bool
    warm: str
    dry_run: bool
    forward_signals: str | None
    hang_timeout: float | None
    stack_period: float
    training_script: str
    training_script_args: tuple[str, ...]
    given: frozenset[str] = frozenset()  # flags set on the command line or by PET_*


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _switch_default(flag: Flag, environ: Mapping[str, str]) -> bool:
    raw = environ.get(flag.env_name or "")
    if raw is None:
        return bool(flag.default)
    try:
        return bool(int(raw))
    except ValueError:
        raise UsageError(
            f"{flag.env_name}={raw!r} must be an integer (1 turns {flag.names[0]} on, 0 off)"
        ) from None


def _value_default(flag: Flag, environ: Mapping[str, str]) -> object:
    raw = environ.get(flag.env_name or "")
    if raw is None:
        return flag.default
    if flag.choices is not None and raw not in flag.choices:
        raise UsageError(
            f"{flag.env_name}={raw!r} is not a valid value for {flag.names[0]}; "
            f"choose from {', '.join(flag.choices)}"
        )
    try:
        return flag.convert(raw)
    except ValueError:
        raise UsageError(
            f"{flag.env_name}={raw!r} is not a valid value for {flag.names[0]}"
        ) from None


def _add_flag(group: argparse.ArgumentParser, flag: Flag, environ: Mapping[str, str]) -> None:
    if flag.kind is FlagKind.SWITCH:
        group.add_argument(
            *flag.names,
            dest=flag.dest,
            action="store_const",
            const=True,
            default=_switch_default(flag, environ),
            help=flag.help,
        )
        return
    group.add_argument(
        *flag.names,
        dest=flag.dest,
        type=flag.convert,
        choices=flag.choices,
        default=_value_default(flag, environ),
        metavar=flag.metavar,
        help=flag.help,
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """Build the argparse parser, with ``PET_*`` values from ``environ`` as defaults."""
    parser = _Parser(prog=PROG, description="Launch distributed PyTorch workers, like torchrun.")
    for flag in FLAGS:
        _add_flag(parser, flag, environ)
    parser.add_argument(
        "training_script",
        help="The script (or module, or program) each worker runs, followed by its own arguments.",
    )
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return parser


def _check_one_value_each(values: dict[str, object]) -> None:
    """Python 3.11's argparse reads ``--flag=--`` as an empty list: refuse it as argparse would."""
    for flag in FLAGS:
        if flag.kind is FlagKind.VALUE and isinstance(values[flag.dest], list):
            raise UsageError(f"argument {'/'.join(flag.names)}: expected one argument")


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> RawArgs:
    """Parse ``argv`` (without the program name).

    Raises:
        UsageError: for any argument the parser rejects, in one line.
    """
    namespace = build_parser(environ).parse_args(list(argv))
    values = vars(namespace)
    _check_one_value_each(values)
    values["training_script_args"] = tuple(values["training_script_args"])
    values["given"] = _given(argv, environ)
    return RawArgs(**{f.name: values[f.name] for f in fields(RawArgs)})


def _given(argv: Sequence[str], environ: Mapping[str, str]) -> frozenset[str]:
    """The flags ``argv`` or a ``PET_*`` variable set, by dest (defaults left out)."""
    parser = _Parser(prog=PROG, argument_default=argparse.SUPPRESS, add_help=False)
    for flag in FLAGS:
        action = "store_const" if flag.kind is FlagKind.SWITCH else "store"
        extra = {"const": True} if flag.kind is FlagKind.SWITCH else {}
        parser.add_argument(*flag.names, dest=flag.dest, action=action, **extra)  # type: ignore[arg-type]
    parser.add_argument("training_script")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    typed = set(vars(parser.parse_args(list(argv)))) - {"training_script", "training_script_args"}
    from_env = {f.dest for f in FLAGS if f.env_name and f.env_name in environ}
    return frozenset(typed | from_env)


def help_text(environ: Mapping[str, str]) -> str:
    """The ``--help`` text."""
    return build_parser(environ).format_help()
