"""Run the real torchrun and rallypoint side by side, in a controlled environment.

Both launchers are started as ``sys.executable -m torch.distributed.run`` and
``sys.executable -m rallypoint`` with an environment built from scratch (see
:func:`base_env`), never from the test process's own ``os.environ``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import scratch_env
from tests.harness import MARK

SCRIPTS = Path(__file__).resolve().parent / "scripts"
REPO = Path(__file__).resolve().parents[2]
TORCHRUN = (sys.executable, "-m", "torch.distributed.run")
RALLYPOINT = (sys.executable, "-m", "rallypoint")
LAUNCHERS = {"torchrun": TORCHRUN, "rallypoint": RALLYPOINT}

# MARK (tests/harness.py) is the variable the ``mark`` fixture looks for in
# /proc/*/environ to find processes a test left behind. Both launchers get the same value.


def base_env(tmpdir: Path, mark: str, **extra: str) -> dict[str, str]:
    """The minimal launcher environment: :func:`scratch_env`, TMPDIR and the leak marker."""
    env = scratch_env()
    env.update({"TMPDIR": str(tmpdir), MARK: mark})
    env.update(extra)
    return env


# A warning torch itself prints on the stderr of every process that imports it, in some
# environments only (without numpy: "UserWarning: Failed to initialize NumPy"): the
# warnings module's ``<file>:<line>: <Category>: <message>`` line, then the source line.
TORCH_WARNING = re.compile(r"^(\[[^]]*\]:)?\S*/torch/\S+\.py:\d+: \w*Warning: ")


def without_torch_warnings(text: str) -> str:
    """``text`` without the warnings torch's own code printed (see TORCH_WARNING).

    A warning's source line is the next line with the same rank prefix (none when the
    stream is not prefixed), even if another rank's line came in between.
    """
    kept: list[str] = []
    source_next: set[str] = set()  # prefixes whose next line is a warning's source line
    for line in text.splitlines(keepends=True):
        prefix, _, rest = line.rpartition("]:") if line.startswith("[") else ("", "", line)
        if TORCH_WARNING.match(line):
            source_next.add(prefix)
        elif prefix in source_next:
            source_next.discard(prefix)
            if not rest.startswith("  "):
                kept.append(line)
        else:
            kept.append(line)
    return "".join(kept)


@dataclass(frozen=True)
class Outcome:
    """How one launcher run ended."""

    launcher: str
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"{self.launcher} exited {self.returncode}\n--- stdout\n{self.stdout[-4000:]}"
            f"\n--- stderr\n{self.stderr[-4000:]}"
        )


def launch_each(
    argv: Mapping[str, Sequence[str]], envs: Mapping[str, Mapping[str, str]], cwd: Path
) -> dict[str, subprocess.Popen[str]]:
    """Start ``<launcher> argv[launcher]`` for each launcher named in ``argv``, at once."""
    return {
        name: subprocess.Popen(
            [*LAUNCHERS[name], *argv[name]],
            env=dict(envs[name]),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in argv
    }


def finish_each(
    procs: Mapping[str, subprocess.Popen[str]], timeout: float = 120
) -> dict[str, Outcome]:
    """Wait for every launcher; kill any still running when one times out."""
    outcomes = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            outcomes[name] = Outcome(name, proc.returncode, out, without_torch_warnings(err))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outcomes


def run_both(
    args: Sequence[str],
    envs: Mapping[str, Mapping[str, str]],
    cwd: Path,
    *,
    concurrent: bool = True,
    timeout: float = 150,
) -> dict[str, Outcome]:
    """Run ``<launcher> ARGS`` for both launchers; ``envs`` maps launcher name -> env.

    With ``concurrent`` both run at the same time (torchrun alone takes ~3 s to
    start); otherwise torchrun first, then rallypoint (needed when both must
    bind the same fixed port).
    """
    if concurrent:
        return finish_each(launch_each(dict.fromkeys(LAUNCHERS, args), envs, cwd), timeout)
    outcomes: dict[str, Outcome] = {}
    for name in LAUNCHERS:
        done = subprocess.run(
            [*LAUNCHERS[name], *args],
            env=dict(envs[name]),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        outcomes[name] = Outcome(
            name, done.returncode, done.stdout, without_torch_warnings(done.stderr)
        )
    return outcomes


def _split0(data: bytes) -> list[str]:
    text = data.decode()
    assert text.endswith("\0"), "NUL-terminated output expected"
    return text[:-1].split("\0")


def load_dumps(folder: Path) -> dict[int, dict[str, Any]]:
    """rank -> {"argv": [...], "env": {...}} from what the dump scripts wrote."""
    dumps: dict[int, dict[str, Any]] = {}
    for path in folder.glob("rank*.json"):
        dumps[int(path.stem.removeprefix("rank"))] = json.loads(path.read_text())
    for path in folder.glob("rank*.env0"):
        rank = int(path.stem.removeprefix("rank"))
        env = dict(item.split("=", 1) for item in _split0(path.read_bytes()))
        argv = _split0(path.with_suffix(".argv0").read_bytes())
        dumps[rank] = {"argv": argv, "env": env}
    return dumps
