"""Slurm hostlists, expanded as Slurm expands them (``scontrol show hostnames``)."""

from __future__ import annotations

import pytest

from rallypoint.errors import ConfigError
from rallypoint.hostlist import MAX_HOSTS, expand_hostlist

# Forms from Slurm's documentation and from what slurmctld writes into SLURM_JOB_NODELIST.
SLURM_FORMS = [
    ("tux1", "tux1"),
    ("tux[1-3]", "tux1 tux2 tux3"),
    ("tux[0-5,12,20-22]", "tux0 tux1 tux2 tux3 tux4 tux5 tux12 tux20 tux21 tux22"),
    ("node1,node[2-5,12]", "node1 node2 node3 node4 node5 node12"),
    ("gpu[001-004,010],login1", "gpu001 gpu002 gpu003 gpu004 gpu010 login1"),
    ("linux[00-03]", "linux00 linux01 linux02 linux03"),
    ("n[8-10]", "n8 n9 n10"),  # no padding: LO was written with one digit
    ("n[08-10]", "n08 n09 n10"),
    ("n[098-101]", "n098 n099 n100 n101"),
    ("n[001-10]", "n001 n002 n003 n004 n005 n006 n007 n008 n009 n010"),  # LO's width
    ("n[7]", "n7"),
    ("n[3,1,2]", "n3 n1 n2"),  # the order as written
    ("n[1-2],n[1-2]", "n1 n2 n1 n2"),  # duplicates kept
    ("rack[0-1]_b[0-2]", "rack0_b0 rack0_b1 rack0_b2 rack1_b0 rack1_b1 rack1_b2"),
    ("r[1-2]c[1,3]n[01-02]", "r1c1n01 r1c1n02 r2c1n01 r2c1n02 r1c3n01 r1c3n02 r2c3n01 r2c3n02"),
    ("a-ib,b[1-2]", "a-ib b1 b2"),
    ("[1-2]", "1 2"),
    ("node-a,node-b.cluster", "node-a node-b.cluster"),
    ("a b\tc,d", "a b c d"),
    ("a,,b,", "a b"),
    ("", ""),
    ("gpu[0-65535]", " ".join(f"gpu{n}" for n in range(MAX_HOSTS))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "hosts"), SLURM_FORMS, ids=[t[:30] for t, _ in SLURM_FORMS])
def test_slurm_forms(text: str, hosts: str) -> None:
    assert expand_hostlist(text) == tuple(hosts.split())


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("n[1-3", "never closed"),
        ("a[1-2]-ib", "text after its last ']'"),
        ("n1-3]", "brackets must pair"),
        ("n[1-2]]", "brackets must pair"),
        ("n[[1-2]]", "brackets must pair"),
        ("n[]", "'' is not N or LO-HI"),
        ("n[a-b]", "'a-b' is not N or LO-HI"),
        ("n[-1]", "'-1' is not N or LO-HI"),
        ("n[1--2]", "'1--2' is not N or LO-HI"),
        ("n[1-2-3]", "'1-2-3' is not N or LO-HI"),
        ("n[１-２]", "is not N or LO-HI"),  # digits, but not ASCII ones
        ("n[5-3]", "the range 5-3 runs backwards"),
        ("n[0-65536]", f"more than {MAX_HOSTS} hosts"),
        ("a[0-999]b[0-999]", f"more than {MAX_HOSTS} hosts"),
        ("a[0-40000],b[0-40000]", f"more than {MAX_HOSTS} hosts"),
        ("n[1-" + "9" * 5000 + "]", "is not N or LO-HI"),
    ],
    ids=lambda value: value[:20],
)
def test_refused_forms_name_the_variable(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"^SLURM_STEP_NODELIST=") as caught:
        expand_hostlist(text, "SLURM_STEP_NODELIST")
    assert says in str(caught.value)
