"""The public surface of the package, pinned (as Trio's test_exports does)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rallypoint


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(rallypoint.__all__) == [
        "ChildFailedError",
        "ConfigError",
        "LaunchConfig",
        "RallypointError",
        "SignalReceived",
        "elastic_launch",
        "launch",
        "record",
    ]
    for name in rallypoint.__all__:
        assert getattr(rallypoint, name) is not None


def test_importing_record_loads_nothing_else() -> None:
    code = (
        "import sys; from rallypoint import record; "
        "print(sorted(m for m in sys.modules if m.startswith('rallypoint')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "rallypoint.agent" not in out
    assert "rallypoint.failures.record" in out


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        rallypoint.nope  # noqa: B018
