"""Where a final failure is written: the run's ``failure.json`` and the launcher's error file."""

from __future__ import annotations

import json

from rallypoint.failures.error_file import write_error_file
from rallypoint.failures.report import FailureReport, WorkerFailure
from rallypoint.logs.layout import RunLayout


def root_cause_document(culprit: WorkerFailure) -> dict[str, object]:
    """torchrun's copy of the root cause for the launcher's own error file."""
    return {
        "message": {
            "message": culprit.message,
            "extraInfo": {
                "py_callstack": culprit.traceback,
                "timestamp": str(int(culprit.exited_at)),
            },
            "errorCode": culprit.status.torch_exitcode,
        }
    }


def persist_failure(
    report: FailureReport,
    layout: RunLayout,
    own_error_file: str | None,
) -> str | None:
    """Write the JSON report next to the logs (returning its path) and the root cause."""
    path = None
    if layout.run_dir is not None:
        target = layout.run_dir / "failure.json"
        target.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
        path = str(target)
    if own_error_file:
        write_error_file(own_error_file, root_cause_document(report.culprit))
    return path
