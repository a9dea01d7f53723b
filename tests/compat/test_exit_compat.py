"""Exit codes and restarts: the same script under rallypoint and torchrun."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat._helpers import SCRIPTS, base_env, run_both

pytestmark = [pytest.mark.integration, pytest.mark.torch]

# mode, flags, expected launcher exit code
CASES = {
    "rank_exits_3": ("exit3_rank1", ["--nproc-per-node=2"], 1),
    "fails_once_then_restarts": ("fail_first", ["--nproc-per-node=2", "--max-restarts=2"], 0),
    "restarts_exhausted": ("always_fail", ["--nproc-per-node=1", "--max-restarts=2"], 1),
}


def _attempts(log: Path) -> list[tuple[int, int]]:
    """(rank, restart count) for every worker start, from the lines workers appended."""
    return [
        (int(rank), int(count))
        for rank, count in (line.split() for line in log.read_text().splitlines())
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_exit_behaviour_matches_torchrun(case: str, tmp_path: Path, mark: str) -> None:
    mode, flags, want_exit = CASES[case]
    logs = {name: tmp_path / f"{name}.log" for name in ("torchrun", "rallypoint")}
    envs = {
        name: base_env(tmp_path, mark, COMPAT_MODE=mode, COMPAT_ATTEMPT_LOG=str(log))
        for name, log in logs.items()
    }
    outcomes = run_both([*flags, str(SCRIPTS / "attempts.py")], envs, cwd=tmp_path)
    attempts = {name: _attempts(log) for name, log in logs.items()}
    for name, outcome in outcomes.items():
        assert outcome.returncode == want_exit, outcome.describe()
        seen = attempts[name]
        if case == "rank_exits_3":
            # one attempt; rank 1 surely ran (it is the one that failed)
            assert (1, 0) in seen, name
            assert {count for _, count in seen} == {0}, name
        elif case == "fails_once_then_restarts":
            # the successful second attempt ran both ranks to the end, with count 1
            assert sorted(r for r, c in seen if c == 1) == [0, 1], (name, seen)
            assert {count for _, count in seen} == {0, 1}, (name, seen)
        else:
            # 1 + --max-restarts attempts, then the launcher gives up
            assert seen == [(0, 0), (0, 1), (0, 2)], (name, seen)
