"""Fixtures of the etcd backend's own tests (real etcd servers from tests/contract)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.etcd_servers import EtcdCluster, have_etcd

needs_etcd = pytest.mark.skipif(not have_etcd(), reason="etcd is not installed")


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    """One fresh single-member etcd, stopped and removed afterwards."""
    with EtcdCluster(1) as cluster:
        yield cluster


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    """A fresh three-member etcd cluster on loopback, stopped and removed afterwards."""
    with EtcdCluster(3) as cluster:
        yield cluster
