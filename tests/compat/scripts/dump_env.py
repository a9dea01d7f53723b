"""Write this worker's argv and full environment to $COMPAT_DUMP_DIR/rank<RANK>.json."""

import json
import os
import sys

path = os.path.join(os.environ["COMPAT_DUMP_DIR"], f"rank{os.environ['RANK']}.json")
with open(path, "x") as out:
    json.dump({"argv": sys.argv, "env": dict(os.environ)}, out, indent=1, sort_keys=True)
