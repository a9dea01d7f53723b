"""Exit with the code given by $EXIT_CODE on ranks listed in $FAIL_RANKS (all if unset)."""

import os
import sys

ranks = os.environ.get("FAIL_RANKS")
if ranks is None or os.environ["RANK"] in ranks.split(","):
    sys.exit(int(os.environ.get("EXIT_CODE", "3")))
