"""Where a run's files go: torchrun's layout.

``<log_dir>/<run_id>_<random>/attempt_<n>/<local_rank>/{stdout.log,stderr.log,error.json}``.
With no ``--log-dir`` a ``torchelastic_*`` temporary folder is made, as torchrun
does; with ``--log-dir=/dev/null`` nothing is written at all. Unlike torchrun,
an attempt folder that already exists is never wiped: a second round with the
same restart count gets ``attempt_<n>.<k>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rallypoint.ids import private_dir


@dataclass(frozen=True, slots=True)
class RunLayout:
    """The run's log folder, or none when logs are disabled."""

    run_dir: Path | None

    @classmethod
    def create(cls, log_dir: str | None, run_id: str, temp_root: str) -> RunLayout:
        """Make the run folder (and the base folder if needed).

        Args:
            log_dir: ``--log-dir``; None for a new ``torchelastic_*`` folder in ``temp_root``.
            run_id: the job's run id, the prefix of the run folder.
            temp_root: where temporary folders go (``$TMPDIR`` as the launcher saw it).
        """
        if log_dir == os.devnull:
            return cls(None)
        if log_dir is None:
            base = private_dir(temp_root, "torchelastic_")
        else:
            os.makedirs(log_dir, exist_ok=True)
            base = log_dir
        return cls(Path(private_dir(base, f"{run_id}_")))

    def attempt_dir(self, restart_count: int) -> Path | None:
        """Make and return a fresh folder for an attempt, never reusing an old one."""
        if self.run_dir is None:
            return None
        candidate = self.run_dir / f"attempt_{restart_count}"
        suffix = 0
        while candidate.exists():
            suffix += 1
            candidate = self.run_dir / f"attempt_{restart_count}.{suffix}"
        candidate.mkdir(parents=True)
        return candidate


@dataclass(frozen=True, slots=True)
class WorkerFiles:
    """One worker's files in an attempt folder (all None when logs are disabled)."""

    folder: Path | None

    @classmethod
    def create(cls, attempt_dir: Path | None, local_rank: int) -> WorkerFiles:
        """Make ``<attempt>/<local_rank>/``."""
        if attempt_dir is None:
            return cls(None)
        folder = attempt_dir / str(local_rank)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder)

    def path(self, name: str) -> str:
        """Path of ``name`` in the folder, or ``""`` when logs are disabled."""
        return "" if self.folder is None else str(self.folder / name)
