"""torchrun's error-file format (contract §5), read and written.

A worker that fails writes ``TORCHELASTIC_ERROR_FILE``::

    {"message": {"message": "ValueError: bad shape",
                 "extraInfo": {"py_callstack": "Traceback ...", "timestamp": "1700000000"}}}

torch's own ``@record`` writes exactly this, so its files and ours are read the
same way. The older "new format" (a plain string ``message`` with a top-level
``timestamp``) is read too.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ErrorFileContent:
    """What a worker's error file says."""

    message: str
    traceback: str
    timestamp: int
    raw: dict[str, object]


def exception_document(exc: BaseException, now: float | None = None) -> dict[str, object]:
    """The JSON document torch's ``@record`` writes for ``exc``."""
    stamp = int(time.time() if now is None else now)
    text = "".join(traceback.format_exception(exc))
    return {
        "message": {
            "message": f"{type(exc).__name__}: {exc}",
            "extraInfo": {"py_callstack": text, "timestamp": str(stamp)},
        }
    }


def write_error_file(path: str, document: dict[str, object]) -> None:
    """Write ``document`` to ``path``, creating folders, replacing an older file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(target)


def _content(raw: dict[str, object]) -> ErrorFileContent:
    message = raw.get("message")
    if isinstance(message, dict):
        extra = message.get("extraInfo") or {}
        stack = str(extra.get("py_callstack", "")) if isinstance(extra, dict) else ""
        stamp = extra.get("timestamp", 0) if isinstance(extra, dict) else 0
        return ErrorFileContent(str(message.get("message", "")), stack, int(str(stamp) or 0), raw)
    return ErrorFileContent(str(message or ""), "", int(str(raw.get("timestamp", 0))), raw)


def read_error_file(path: str) -> ErrorFileContent | None:
    """Read a worker's error file; None when it is missing or not torchrun's format."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        return _content(raw)
    except (TypeError, ValueError):
        return None
