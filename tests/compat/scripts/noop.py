"""Do nothing but leave a marker file (never imports torch)."""

import os
import sys

assert "torch" not in sys.modules
with open(os.path.join(os.environ["COMPAT_DUMP_DIR"], f"ran{os.environ['RANK']}"), "x"):
    pass
