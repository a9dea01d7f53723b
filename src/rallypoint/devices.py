"""Count CPUs and GPUs without importing torch.

``--nproc-per-node`` accepts ``cpu``, ``gpu`` and ``auto``; torchrun answers
them with ``torch.cuda.device_count()``, which costs seconds of import. Here:
the kernel's view of NVIDIA devices (``/proc/driver/nvidia/gpus``), else
``nvidia-smi -L``, narrowed by ``CUDA_VISIBLE_DEVICES`` as CUDA would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def cpu_count() -> int:
    """CPUs this process may run on (affinity and cpuset aware), as torch counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _physical_gpus() -> int:
    if NVIDIA_PROC.is_dir():
        return sum(1 for _ in NVIDIA_PROC.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def _visible(physical: int, visible: str | None) -> int:
    if visible is None:
        return physical
    count = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry or (entry.isdigit() and int(entry) >= physical) or entry.startswith("-"):
            break  # CUDA stops at the first invalid entry
        count += 1
    return min(count, physical)


class DeviceCounter(Protocol):
    """Answers ``--nproc-per-node=cpu|gpu|auto``."""

    def gpus(self) -> int:
        """GPUs a worker would see."""

    def cpus(self) -> int:
        """CPUs usable by the launcher."""


@dataclass(frozen=True, slots=True)
class SystemDevices:
    """This machine's devices; the environment is passed in, never read."""

    environ: Mapping[str, str]

    def gpus(self) -> int:
        """GPUs CUDA would show to a worker of this launcher."""
        return _visible(_physical_gpus(), self.environ.get("CUDA_VISIBLE_DEVICES"))

    def cpus(self) -> int:
        """CPUs usable by this launcher."""
        return cpu_count()
