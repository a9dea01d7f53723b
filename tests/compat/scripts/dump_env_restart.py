"""Fail on the first attempt; on the next, dump as dump_env.py does, and whether torch was loaded.

Under rallypoint's warm restarts the second attempt runs in a standby that
imported torch before this program started; under torchrun it never is.
"""

import sys

TORCH_PRELOADED = "torch" in sys.modules

import json  # noqa: E402
import os  # noqa: E402

if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
    import runpy

    here = os.path.dirname(os.path.abspath(__file__))
    # next to this file when the test copied both into a package, else in tests/workers
    found = [os.path.join(d, "standbys_ready.py") for d in (here, f"{here}/../../workers")]
    helper = next(path for path in found if os.path.exists(path))
    runpy.run_path(helper)["wait_until_ready"]()  # under rallypoint the restart is then warm
    sys.exit(1)
path = os.path.join(os.environ["COMPAT_DUMP_DIR"], f"rank{os.environ['RANK']}.json")
with open(path, "x") as out:
    dump = {"argv": sys.argv, "env": dict(os.environ), "torch_preloaded": TORCH_PRELOADED}
    json.dump(dump, out, indent=1, sort_keys=True)
