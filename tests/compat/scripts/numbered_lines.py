"""Write numbered lines to stdout and stderr (never imports torch).

Each line is ``<stream> rank=<RANK> line=<i>`` plus optional padding, written
with one ``write`` call per line. Environment:

* ``COMPAT_LINES``: lines per stream (default 3);
* ``COMPAT_STREAMS``: ``out``, ``err`` or ``both`` (default ``both``);
* ``COMPAT_PAD``: length of a ``x`` padding added to every line (default 0);
* ``COMPAT_ONLY_RANK``: if set, only that rank writes anything.
"""

import os
import sys

assert "torch" not in sys.modules
rank = os.environ["RANK"]
only = os.environ.get("COMPAT_ONLY_RANK")
if only is None or only == rank:
    count = int(os.environ.get("COMPAT_LINES", "3"))
    streams = os.environ.get("COMPAT_STREAMS", "both")
    pad = " " + "x" * int(os.environ["COMPAT_PAD"]) if os.environ.get("COMPAT_PAD") else ""
    targets = []
    if streams in ("out", "both"):
        targets.append(("out", sys.stdout))
    if streams in ("err", "both"):
        targets.append(("err", sys.stderr))
    for i in range(count):
        for name, stream in targets:
            stream.write(f"{name} rank={rank} line={i}{pad}\n")
    for _, stream in targets:
        stream.flush()
