"""How a worker ended: an exit code or a signal, and how to say it."""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """A worker's end: ``code`` when it exited, ``signal`` when a signal killed it."""

    code: int | None = None
    signal: signal.Signals | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """``Popen.returncode`` -> status (negative means killed by that signal)."""
        if returncode >= 0:
            return cls(code=returncode)
        try:
            return cls(signal=signal.Signals(-returncode))
        except ValueError:
            return cls(code=returncode)

    @property
    def succeeded(self) -> bool:
        """True for exit code 0."""
        return self.code == 0

    @property
    def torch_exitcode(self) -> int:
        """The number torchrun shows: the code, or minus the signal number."""
        return -int(self.signal) if self.signal is not None else int(self.code or 0)

    def describe(self) -> str:
        """``exit 3`` or ``signal SIGSEGV``."""
        if self.signal is not None:
            return f"signal {self.signal.name}"
        return f"exit {self.code}"
