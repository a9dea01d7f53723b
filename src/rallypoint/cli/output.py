"""Every line rallypoint shows a person: errors, warnings, the failure summary.

The summary keeps torchrun's block (title, ``Failures:``, ``Root Cause (first
observed failure):``, the per-rank fields) so log scrapers keep matching, and
adds a first line that names the culprit, and a separate block for the ranks
rallypoint stopped itself (torchrun lists those as failures).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from rallypoint.logs.writer import LogStream

if TYPE_CHECKING:  # imported for types only: the launch path never loads it
    from rallypoint.cli.dryrun import DryRun
    from rallypoint.failures.report import FailureReport, WorkerFailure
    from rallypoint.hangs.board import PublishedRank

PREFIX = "rallypoint"
NO_TRACEBACK = (
    "<N/A> (no error file; to get one, decorate the entry function with "
    "rallypoint.record or torch's record)"
)
MAX_RULE = 60


def one_line(text: str) -> str:
    """``text`` with every character that would break or hide a line escaped (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def usage_error(message: str, stream: TextIO | None = None) -> None:
    """One line for bad input (exit code 2 follows), whatever the input held."""
    print(f"{PREFIX}: error: {one_line(message)} (see {PREFIX} --help)", file=stream or sys.stderr)


def launch_error(message: str, stream: TextIO | None = None) -> None:
    """One line for a job that could not start."""
    print(f"{PREFIX}: error: {one_line(message)}", file=stream or sys.stderr)


def omp_warning(stream: TextIO | None = None) -> None:
    """torchrun's notice that OMP_NUM_THREADS was set to 1 for the workers."""
    print(
        f"{PREFIX}: OMP_NUM_THREADS is set to 1 for every worker (it was unset and there "
        "are several workers per node); set it yourself to tune it.",
        file=stream or sys.stderr,
    )


def slurm_derived(flags: tuple[str, ...], stream: TextIO | None = None) -> None:
    """The one line that says what the Slurm step filled in."""
    print(
        f"{PREFIX}: running as a Slurm step task, so using {' '.join(flags)} "
        "(any of these flags given, or its PET_* variable, wins)",
        file=stream or sys.stderr,
    )


def notices(seen: list[tuple[str, float, int]], stream: TextIO | None = None) -> None:
    """The notices (``--forward-signals``) of the run, if any: name, time, workers reached."""
    import time

    if not seen:
        return
    told = ", ".join(
        f"{name} at {time.strftime('%H:%M:%S', time.localtime(at))} to {count} workers"
        for name, at, count in seen
    )
    print(f"{PREFIX}: notices passed on during the run: {told}", file=stream or sys.stderr)


def signal_exit(signame: str, stream: TextIO | None = None) -> None:
    """Why the launcher stopped after a signal."""
    print(f"{PREFIX}: received {signame}: the workers were stopped", file=stream or sys.stderr)


def _shown(value: object) -> str:
    """A setting's value as ``--dry-run`` prints it."""
    import dataclasses

    from rallypoint.config import StdSpec

    if value is None:
        return "-"
    if isinstance(value, StdSpec):
        pairs = ",".join(f"{rank}:{int(mask)}" for rank, mask in value.per_rank)
        return pairs or str(int(value.default))
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, frozenset):
        return ",".join(map(str, sorted(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ", ".join(f"{f.name}={getattr(value, f.name)}" for f in dataclasses.fields(value))
    return repr(value) if isinstance(value, tuple) else str(value)


def dry_run(plan: DryRun, stream: TextIO | None = None) -> None:
    """What ``--dry-run`` found: the settings, then each local rank's command and variables."""
    import shlex

    width = max(len(name) for name, _ in plan.settings)
    lines = [f"{PREFIX}: dry run, nothing was started", "configuration:"]
    lines += [f"  {name:<{width}}  {_shown(value)}" for name, value in plan.settings]
    lines.append("each local rank: its command, and what it gets on top of this environment:")
    for rank in plan.ranks:
        lines.append(f"local rank {rank.local_rank}: {shlex.join(rank.argv)}")
        lines += [f"  {key}={value}" for key, value in rank.env]
    if plan.hidden_ranks:
        first = len(plan.ranks)
        lines.append(
            f"(local ranks {first} to {first + plan.hidden_ranks - 1} follow the same pattern)"
        )
    print("\n".join(one_line(line) for line in lines), file=stream or sys.stdout)


def setup_logging(environ: Mapping[str, str]) -> None:
    """Launcher logging to stderr, level from ``LOGLEVEL`` (WARNING by default)."""
    level = environ.get("LOGLEVEL", "WARNING").upper()
    logging.basicConfig(
        stream=LogStream(2),  # never blocks the agent's loop (see logs/writer.py)
        level=getattr(logging, level, logging.WARNING),
        format=f"[{PREFIX}] %(levelname)s %(message)s",
    )


def _block(idx: int, failure: WorkerFailure, host: str) -> str:
    import datetime  # only failures pay for it

    signame = f" ({failure.status.signal.name})" if failure.status.signal else ""
    stamp = datetime.datetime.fromtimestamp(int(failure.exited_at)).isoformat(sep="_")
    text = (failure.traceback or failure.message or NO_TRACEBACK).replace("\n", "\n  ")
    lines = [
        f"[{idx}]:",
        f"  time      : {stamp}",
        f"  host      : {host}",
        f"  rank      : {failure.global_rank} (local_rank: {failure.local_rank})",
        f"  exitcode  : {failure.status.torch_exitcode} (pid: {failure.pid}) {signame}",
        f"  error_file: {failure.error_file or '<N/A>'}",
        f"  traceback : {text}",
    ]
    return "\n".join(lines)


def _stacks(report: FailureReport) -> list[str]:
    """Python stacks (at a fatal signal, or when found hung), after torchrun's block."""
    return [
        f"{PREFIX}: rank {f.global_rank} (local {f.local_rank}): {f.stack}"
        for f in report.failures
        if f.stack
    ]


def _folded(report: FailureReport) -> list[str]:
    """Blocks of the non-root failures, identical tracebacks shown once."""
    seen: dict[str, list[int]] = {}
    blocks: list[str] = []
    for idx, failure in enumerate(report.failures[1:], start=1):
        key = failure.traceback or failure.message
        if key in seen or key == (report.culprit.traceback or report.culprit.message):
            seen.setdefault(key, []).append(failure.global_rank)
            continue
        seen[key] = []
        blocks.append(_block(idx, failure, report.host))
    repeats = sorted(r for ranks in seen.values() for r in ranks)
    if repeats:
        blocks.append(
            f"  (ranks {', '.join(map(str, repeats))} failed with the same "
            "traceback as one shown above)"
        )
    return blocks


def format_summary(report: FailureReport, report_path: str | None) -> str:
    """The whole failure summary, headline first."""
    root = _block(0, report.culprit, report.host)
    others = _folded(report) or ["  <NO_OTHER_FAILURES>"]
    stopped = [
        f"  rank {f.global_rank} (local_rank: {f.local_rank}, pid {f.pid}): {f.status.describe()}"
        for f in report.stopped
    ]
    title = f"{report.name} FAILED"
    seen = [title, *"\n".join([root, *others]).splitlines()]
    width = min(MAX_RULE, max(len(line) for line in seen))  # as torch: the title counts too
    lines = [
        f"{PREFIX}: {report.headline}",
        "",
        "=" * width,
        title,
        "-" * width,
        "Failures:",
        *others,
        "-" * width,
        "Root Cause (first observed failure):",
        root,
    ]
    if stopped:
        lines += [
            "-" * width,
            "Stopped by rallypoint after the root cause (not failures):",
            *stopped,
        ]
    lines.append("=" * width)
    lines += _stacks(report)
    if report_path:
        lines.append(f"{PREFIX}: failure report written to {report_path}")
    return "\n".join(lines)


# --- rallypoint status -----------------------------------------------------------------------


def digest_status(node: str, rank: PublishedRank, unchanged_for: float) -> dict[str, object]:
    """One rank as the store shows it: its node's digest, no output."""
    digest, lines = rank.digest, []
    if digest.top is not None:
        lines.append(f'  File "{digest.top.file}", line {digest.top.line} in {digest.top.function}')
    if digest.call_site is not None and digest.call_site != digest.top:
        site = digest.call_site
        lines += ["  ...", f'  File "{site.file}", line {site.line} in {site.function}']
    stack = "stack digest (most recent call first):\n" + "\n".join(lines) if lines else None
    return {
        "rank": rank.rank,
        "node": node,
        "state": "running",
        "unchanged_for": unchanged_for,
        "has_stacks": True,
        "collective": digest.collective,
        "stack": stack,
    }


def _rank_state(rank: Mapping[str, object]) -> str:
    if rank.get("state") == "exited":
        return f"exited ({rank.get('exit') or 'unknown'})"
    unchanged = rank.get("unchanged_for")
    if rank.get("stuck") and isinstance(unchanged, float | int):
        return f"stuck for {unchanged:.0f} s"
    if isinstance(unchanged, float | int):
        return f"running (stack unchanged for {unchanged:.0f} s)"
    return "running"


def _rank_line(rank: Mapping[str, object]) -> str:
    pid = f", pid {rank['pid']}" if rank.get("pid") else ""
    where = f"rank {rank.get('rank')} (node {rank.get('node')}{pid})"
    line = f"  {where}: {_rank_state(rank)}"
    if "last_output" in rank:
        line += f"; last output: {one_line(str(rank['last_output'])) or '<none>'}"
    if rank.get("last_stderr"):
        line += f"; last stderr: {one_line(str(rank['last_stderr']))}"
    return line


def _status_stacks(ranks: list[Mapping[str, object]]) -> list[str]:
    by_text: dict[str, list[str]] = {}
    for rank in ranks:
        text = rank.get("stack")
        if not rank.get("has_stacks", True):
            text = "no stacks: a --no-python worker"
        by_text.setdefault(str(text or "no stack sampled yet"), []).append(str(rank.get("rank")))
    lines = ["stacks:"]
    for text, names in by_text.items():
        label = "rank" if len(names) == 1 else "ranks"
        lines += [f"{label} {', '.join(names)}:", "  " + text.replace("\n", "\n  ")]
    return lines


def _standby_lines(listed: object) -> list[str]:
    """One line per waiting standby (warm restarts): local rank, pid, memory, imports done."""
    standbys = [s for s in listed if isinstance(s, Mapping)] if isinstance(listed, list) else []
    lines = []
    for s in standbys:
        kib = s.get("rss_kib")
        memory = f"{kib / 1024:.0f} MiB resident" if isinstance(kib, int) else "gone"
        if isinstance(kib, int) and "ready" in s:
            memory += ", ready" if s["ready"] else ", importing"
        lines.append(f"  standby local rank {s.get('local_rank')}: pid {s.get('pid')}, {memory}")
    return lines


def status_text(snapshots: Sequence[Mapping[str, object]], stacks: bool) -> str:
    """What ``rallypoint status`` prints: per job, its round and members, then per rank."""
    lines: list[str] = []
    for snap in snapshots:
        nodes = snap.get("member_nodes")
        members = f"{snap.get('members', '?')} members"
        if isinstance(nodes, list):
            members += f" ({', '.join(map(str, nodes))})"
        lines.append(
            f"job {snap.get('run_id')}: round {snap.get('round', '?')}, {members}, "
            f"restarts {snap.get('restarts', 0)}"
        )
        listed = snap.get("ranks")
        ranks = [r for r in listed if isinstance(r, Mapping)] if isinstance(listed, list) else []
        lines += [_rank_line(r) for r in ranks]
        lines += _standby_lines(snap.get("standbys"))
        if stacks:
            lines += _status_stacks(ranks)
    return "\n".join(lines)


def status(snapshots: list[dict[str, object]], stacks: bool, as_json: bool) -> None:
    """Print the status, as text or JSON, on stdout."""
    if as_json:
        import json

        print(json.dumps(snapshots, indent=2))
    else:
        print(status_text(snapshots, stacks))
