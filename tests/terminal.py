"""A pseudo-terminal that stands for the user's terminal: run a launcher in it, type, read.

The launcher runs as a shell would run it: leader of a new session whose
controlling terminal is this pseudo-terminal, in its foreground, so a window
resize reaches it as SIGWINCH and Ctrl-C as SIGINT. Everything the terminal
shows is recorded with the (wall clock) time it arrived.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Sequence

# Take the terminal on fd 0 as controlling terminal, then become the launcher.
BECOME_FOREGROUND = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Terminal:
    """One pseudo-terminal of ``rows`` x ``columns`` and the program running in it."""

    def __init__(self, rows: int = 24, columns: int = 80) -> None:
        self.master, self._slave = pty.openpty()
        termios.tcsetwinsize(self.master, (rows, columns))
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, python_args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Run ``python PYTHON_ARGS`` in the foreground of this terminal."""
        self.process = subprocess.Popen(
            [sys.executable, "-c", BECOME_FOREGROUND, *python_args],
            stdin=self._slave,
            stdout=self._slave,
            stderr=self._slave,
            env=env,
            start_new_session=True,
        )
        os.close(self._slave)
        self._reader.start()
        return self.process

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: every program on the terminal is gone
                data = b""
            with self._lock:
                if data:
                    self.chunks.append((time.time(), data))
                self._lock.notify_all()
            if not data:
                return

    def resize(self, rows: int, columns: int) -> None:
        """Resize the window (the kernel sends SIGWINCH to the foreground)."""
        termios.tcsetwinsize(self.master, (rows, columns))

    def type(self, text: str) -> None:
        """Type ``text`` at the keyboard."""
        os.write(self.master, text.encode())

    def screen(self) -> bytes:
        """Everything shown so far, with the terminal's ``\\r\\n`` back to ``\\n``."""
        with self._lock:
            return b"".join(d for _, d in self.chunks).replace(b"\r\n", b"\n")

    def wait_for(self, needle: bytes, timeout: float = 60) -> None:
        """Wait until ``needle`` has been shown (AssertionError with the screen if not)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while needle not in self.screen():
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    break
                self._lock.wait(left)
        screen = self.screen().decode(errors="replace")
        assert needle.decode() in screen, f"{needle!r} never shown; screen:\n{screen}"

    def finish(self, timeout: float = 60) -> int:
        """Wait for the program's exit and for its last output; return its exit code."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Kill the program if it still runs and close the terminal."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._reader.is_alive():
            self._reader.join(5)
        os.close(self.master)
