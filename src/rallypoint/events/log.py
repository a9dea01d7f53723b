"""The run's event log: one JSON object per line, in ``<run dir>/events.jsonl``.

Each event has a ``kind`` (see :class:`RunEventKind`), a wall-clock ``time``, the
run id, and fields of its own (rank, pid, exit, reason...). With
``--event-log-handler console`` the same lines also go to the launcher's stderr.
"""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


class RunEventKind(enum.Enum):
    """What happened in the run (the store's watch events have kinds of their own)."""

    RUN_STARTED = "run_started"
    WORKER_STARTED = "worker_started"
    WORKER_EXITED = "worker_exited"
    GROUP_RESTARTING = "group_restarting"
    RUN_SUCCEEDED = "run_succeeded"
    RUN_FAILED = "run_failed"
    SIGNAL_RECEIVED = "signal_received"
    NOTICE_FORWARDED = "notice_forwarded"  # a --forward-signals signal, passed on
    HANG_FOUND = "hang_found"  # a rank's stack stopped changing: the verdict and stacks


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event; ``fields`` are JSON-ready values."""

    kind: RunEventKind
    time: float
    fields: dict[str, object] = field(default_factory=dict)


class EventLog:
    """Writes events to the run's file and, optionally, to the console."""

    def __init__(self, run_id: str, folder: Path | None, console: TextIO | None = None) -> None:
        self._run_id = run_id
        self._file = open(folder / "events.jsonl", "a", encoding="utf-8") if folder else None  # noqa: SIM115
        self._console = console

    @classmethod
    def for_handler(cls, handler: str, run_id: str, folder: Path | None) -> EventLog:
        """The log for ``--event-log-handler`` (``console`` also prints)."""
        return cls(run_id, folder, sys.stderr if handler == "console" else None)

    def emit(self, event: RunEvent) -> None:
        """Record ``event``."""
        line = json.dumps(
            {
                "kind": event.kind.value,
                "time": round(event.time, 6),
                "run_id": self._run_id,
                **event.fields,
            }
        )
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        if self._console is not None:
            print(f"[rallypoint event] {line}", file=self._console)

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
