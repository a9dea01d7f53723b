"""``python -m tests.workers.probe_pkg MODE``: the probe, run as a module."""

import sys

from tests.workers.probe import run

run(sys.argv[1] if len(sys.argv) > 1 else "")
