"""A worker that logs every signal it gets, with its sender, and takes USR1/USR2 as notices.

It writes ``$RECORD_DIR/<RANK>.ready`` (its pid) once it waits, then one line per signal
to ``$RECORD_DIR/<RANK>.log``: ``NAME si_pid``. A notice (USR1, USR2) is logged and the
worker goes on; ``NOTICE_THEN_EXIT=S`` makes it exit 0 S seconds after its first notice
(any signal in between is logged too, so a doubled notice shows). TERM, INT and HUP end
it with 128+n, as an unhandled signal's shell code would be.
"""

import os
import signal
import time
from pathlib import Path

folder = Path(os.environ["RECORD_DIR"])
rank = os.environ["RANK"]
after_notice = float(os.environ.get("NOTICE_THEN_EXIT", "-1"))
NOTICES = {signal.SIGUSR1, signal.SIGUSR2}
STOPS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, NOTICES | STOPS)
log = open(folder / f"{rank}.log", "a", buffering=1)  # noqa: SIM115
(folder / f"{rank}.ready").write_text(str(os.getpid()))
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    info = signal.sigtimedwait(NOTICES | STOPS, max(0.01, deadline - time.monotonic()))
    if info is None:
        break
    log.write(f"{signal.Signals(info.si_signo).name} {info.si_pid}\n")
    if info.si_signo in STOPS:
        os._exit(128 + info.si_signo)
    if after_notice >= 0 and deadline - time.monotonic() > after_notice:
        deadline = time.monotonic() + after_notice
os._exit(0)
