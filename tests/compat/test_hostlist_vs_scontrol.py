"""Our hostlist expansion against Slurm's own ``scontrol show hostnames``, where installed.

``scontrol`` (Debian's slurm-client) expands a hostlist locally, but only once
it has read a slurm.conf: the test writes a minimal one. Skipped without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rallypoint.errors import ConfigError
from rallypoint.hostlist import expand_hostlist

pytestmark = pytest.mark.integration

SCONTROL = shutil.which("scontrol")
FORMS = [
    "gpu[001-004,010],login1",
    "n[001-10]",
    "n[8-10],n[08-10]",
    "n[3,1,2],n[1-2],n[1-2]",
    "rack[0-1]_blade[0-2]",
    "r[1-2]c[1,3]n[01-02]",
    "a[1-2]b[1-2]c[1-2]d[1-2]",
    "[1-2],x",
    "a b\tc,d",
    "node-a.cluster,node-b",
    "n[0-65535]",
]
REFUSED = ["n[5-3]", "n[]", "n[-1]", "n[0-65536]", "a[1-2]-ib"]


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SCONTROL is None:
        pytest.skip("scontrol (Debian's slurm-client) is not installed")
    conf = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    conf.write_text(
        "ClusterName=hostlist\nSlurmctldHost=localhost\nNodeName=localhost\n"
        "PartitionName=p Nodes=ALL\n"
    )
    return conf


def scontrol(text: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCONTROL), "show", "hostnames", text],
        env={"SLURM_CONF": str(conf), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("text", FORMS)
def test_same_hosts_in_the_same_order(text: str, slurm_conf: Path) -> None:
    done = scontrol(text, slurm_conf)
    assert done.returncode == 0, done.stderr
    assert expand_hostlist(text) == tuple(done.stdout.split())


@pytest.mark.parametrize("text", REFUSED)
def test_what_slurm_refuses_is_refused(text: str, slurm_conf: Path) -> None:
    done = scontrol(text, slurm_conf)
    assert "Invalid hostlist" in done.stdout + done.stderr
    with pytest.raises(ConfigError):
        expand_hostlist(text)
