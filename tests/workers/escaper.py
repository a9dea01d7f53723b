"""Leave a `sleep 1000` in a session of its own, write its pid to $PID_DIR, then $THEN.

$ESCAPE: ``direct`` (our own child calls setsid), ``daemon`` (a shell starts it in
the background with setsid and exits: the sleep is orphaned at once, a double fork) or
``nested`` (the shell stays, in our process group, ignoring SIGTERM: the sleep is
orphaned only when the group's SIGKILL ends the shell, just as the attempt ends).
$THEN: ``exit`` (0 at once), ``sleep`` (until stopped), ``fail-first`` (exit 1 in the
first attempt, sleep in the others).
"""

import os
import subprocess
import time
from pathlib import Path

folder = Path(os.environ["PID_DIR"])
attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
rank = os.environ["RANK"]
if os.environ.get("ESCAPE", "direct") == "direct":
    pid = subprocess.Popen(["setsid", "sleep", "1000"]).pid
elif os.environ["ESCAPE"] == "daemon":
    shell = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"
    pid = int(subprocess.run(["sh", "-c", shell], capture_output=True, check=True).stdout)
else:
    shell = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; trap '' TERM; exec sleep 1000"
    parent = subprocess.Popen(["sh", "-c", shell + " >/dev/null"], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
(folder / f"escapee_{attempt}_{rank}.tmp").write_text(f"{os.getpid()} {pid}")
(folder / f"escapee_{attempt}_{rank}.tmp").rename(folder / f"escapee_{attempt}_{rank}")
then = os.environ.get("THEN", "exit")
if then == "fail-first" and attempt == "0":
    raise SystemExit(1)
if then != "exit":
    time.sleep(1000)
