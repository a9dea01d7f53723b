"""Random names without the cost of importing ``uuid`` and ``tempfile`` at start-up.

Both modules pull in others (``platform``, ``random``, ``hashlib``...) worth about
15 ms of a launch that spawns its workers before doing anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TEMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")


def uuid4_text() -> str:
    """A random (version 4) UUID in its usual text form, as ``str(uuid.uuid4())``."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def temp_root(environ: Mapping[str, str]) -> str:
    """Where temporary folders go: ``$TMPDIR``, ``$TEMP``, ``$TMP``, else ``/tmp``."""
    return next((environ[v] for v in TEMP_VARIABLES if environ.get(v)), "/tmp")


def private_dir(parent: str, prefix: str) -> str:
    """Create a new folder only we can use (0700), ``<parent>/<prefix><random>``."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
