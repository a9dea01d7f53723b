"""The Slurm cluster fixtures: one cluster per proctrack plugin, up for the whole session.

Skipped (with the reason) where the machine cannot run one: not root, or the Debian packages
(``slurmctld slurmd slurm-client munge``, which ``.ci/run`` installs) are missing. Each cluster
is torn down at the end of the session, also when a test or the set-up failed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm.cluster import SlurmCluster, freezer_available, missing_tools

PLUGINS = ("cgroup", "linuxproc")


def _cluster(proctrack: str, nodes: int = 2) -> Iterator[SlurmCluster]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"a Slurm cluster needs {', '.join(missing)}")
    if proctrack == "cgroup" and not freezer_available():
        pytest.skip("proctrack/cgroup needs a cgroup-v1 freezer, which is not mounted here")
    # not under pytest's tmp folder: munged wants every folder above its socket searchable
    state = Path(tempfile.mkdtemp(prefix=f"rallypoint-slurm-{proctrack}-"))
    try:
        with SlurmCluster(state, nodes=nodes, proctrack=proctrack) as cluster:
            yield cluster
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cgroup() -> Iterator[SlurmCluster]:
    """A 3-node cluster with proctrack/cgroup (Slurm signals only the step's tasks)."""
    yield from _cluster("cgroup", nodes=3)


@pytest.fixture(scope="session")
def slurm_linuxproc() -> Iterator[SlurmCluster]:
    """A 2-node cluster with proctrack/linuxproc (Slurm signals every process of the step)."""
    yield from _cluster("linuxproc")


@pytest.fixture(params=PLUGINS)
def slurm(request: pytest.FixtureRequest) -> SlurmCluster:
    """Each cluster in turn."""
    cluster: SlurmCluster = request.getfixturevalue(f"slurm_{request.param}")
    return cluster
