"""rallypoint: a drop-in torchrun that never imports torch.

Public API: :class:`LaunchConfig`, :func:`launch`, :class:`elastic_launch`,
:func:`record`, and the exceptions of :mod:`rallypoint.errors`. Names load
lazily so that a worker importing :func:`record` pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rallypoint.api import elastic_launch, launch
    from rallypoint.config import LaunchConfig
    from rallypoint.errors import ChildFailedError, ConfigError, RallypointError, SignalReceived
    from rallypoint.failures.record import record

__all__ = [
    "ChildFailedError",
    "ConfigError",
    "LaunchConfig",
    "RallypointError",
    "SignalReceived",
    "elastic_launch",
    "launch",
    "record",
]

_HOMES = {
    "LaunchConfig": "rallypoint.config",
    "launch": "rallypoint.api",
    "elastic_launch": "rallypoint.api",
    "record": "rallypoint.failures.record",
    "ChildFailedError": "rallypoint.errors",
    "ConfigError": "rallypoint.errors",
    "RallypointError": "rallypoint.errors",
    "SignalReceived": "rallypoint.errors",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'rallypoint' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
