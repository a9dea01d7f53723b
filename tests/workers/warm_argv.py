"""Fail on the first attempt; on the next, print how this program was started, as JSON.

Also says whether ``xml.dom.minidom`` was loaded before this program imported it (true
only in a standby that warmed it up) and whether ``torch`` was.
"""

import sys

PRELOADED = {name: name in sys.modules for name in ("xml.dom.minidom", "torch")}

import json  # noqa: E402
import os  # noqa: E402

if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0":
    import runpy

    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standbys_ready.py")
    runpy.run_path(helper)["wait_until_ready"]()  # then the restart is a warm one
    sys.exit(1)
main = sys.modules["__main__"]
spec = getattr(main, "__spec__", None)
print(
    json.dumps(
        {
            "argv": sys.argv,
            "orig_argv": sys.orig_argv[1:],
            "path0": sys.path[0],
            "file": globals().get("__file__"),
            "name": __name__,
            "main_file": getattr(main, "__file__", None),
            "spec": None if spec is None else [spec.name, spec.origin],
            "cwd": os.getcwd(),
            "preloaded": PRELOADED,
        }
    ),
    flush=True,
)
