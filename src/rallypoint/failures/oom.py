"""Was a SIGKILLed worker killed by the kernel's OOM killer?

Two witnesses, each read only when a worker died by SIGKILL: the cgroup v2
``memory.events`` counter ``oom_kill`` of the agent's own cgroup (workers
inherit it), compared with its value when the attempt started; and the
kernel log (``/dev/kmsg``), which names the victim's pid. Either may be
unreadable (no cgroup v2, no permission); then the answer is "not known".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _oom_counter_files() -> list[Path]:
    """cgroup v1 ``memory.oom_control`` and v2 ``memory.events`` of this process."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    files = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            files.append(CGROUP_ROOT / "memory" / path.lstrip("/") / "memory.oom_control")
        elif controllers == "":
            files.append(CGROUP_ROOT / path.lstrip("/") / "memory.events")
    return files


def _read_first(paths: list[Path]) -> str | None:
    for path in paths:
        try:
            return path.read_text()
        except OSError:
            continue
    return None


def oom_kill_count() -> int | None:
    """The ``oom_kill`` count of this process's memory cgroup, or None if unreadable."""
    text = _read_first(_oom_counter_files())
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


def kernel_log_names_oom_victim(pid: int) -> bool:
    """True when the kernel log says the OOM killer killed ``pid``."""
    needle = f"Killed process {pid} ".encode()
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return _scan(fd, needle)
    finally:
        os.close(fd)


def _scan(fd: int, needle: bytes) -> bool:
    while True:
        try:
            record = os.read(fd, 8192)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # a record was overwritten while reading; go on
                continue
            return False
        if not record:
            return False
        if needle in record:
            return True


def killed_by_oom(pid: int, count_at_start: int | None) -> bool:
    """Decide for one SIGKILLed worker."""
    now = oom_kill_count()
    if count_at_start is not None and now is not None and now > count_at_start:
        return True
    return kernel_log_names_oom_victim(pid)
