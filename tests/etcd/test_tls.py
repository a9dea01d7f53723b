"""https to etcd with certificates made here by openssl (a CA, a server and a client)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from rallypoint.store import StoreConnectionError
from rallypoint.store.etcd import EtcdStore, EtcdTls, connect_from_config
from tests.contract.etcd_servers import EtcdCluster

from .conftest import needs_etcd

pytestmark = [
    needs_etcd,
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


def test_https_with_ca_and_client_certificate(tls_etcd: EtcdCluster, pki: Path) -> None:
    tls = EtcdTls(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))

    async def main() -> None:
        store = await EtcdStore.connect(tls_etcd.endpoints, "tls", tls=tls, timeout=5)
        try:
            watch = await store.watch("")
            lease = await store.lease_grant(5)
            assert (await store.put("k", "v", expected_revision=0, lease=lease)).ok
            assert await store.add("n", 3) == 3
            event = await asyncio.wait_for(anext(watch), 3)
            assert (event.key, event.value) == ("k", "v")
        finally:
            await store.close()

    asyncio.run(main())


def test_rdzv_conf_with_torchrun_v2_names(tls_etcd: EtcdCluster, pki: Path) -> None:
    conf = {
        "protocol": "https",
        "ca_cert": str(pki / "ca.pem"),
        "ssl_cert": str(pki / "client.pem"),
        "ssl_cert_key": str(pki / "client.key"),
    }
    endpoint = ",".join(f"{h}:{p}" for h, p in tls_etcd.endpoints)

    async def main() -> None:
        store = await connect_from_config(endpoint, "tls", conf, timeout=5)
        try:
            assert (await store.put("k", "v")).ok
            got = await store.get("k")
            assert got is not None
            assert got.value == "v"
        finally:
            await store.close()

    asyncio.run(main())


def test_a_server_signed_by_another_ca_is_refused(tls_etcd: EtcdCluster, pki: Path) -> None:
    tls = EtcdTls(str(pki / "other-ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    with pytest.raises(StoreConnectionError, match=r"127\.0\.0\.1:\d+.*certificate"):
        asyncio.run(EtcdStore.connect(tls_etcd.endpoints, "tls", tls=tls, timeout=3))


def test_no_client_certificate_is_a_clear_error(tls_etcd: EtcdCluster, pki: Path) -> None:
    tls = EtcdTls(str(pki / "ca.pem"))
    with pytest.raises(StoreConnectionError, match=r"127\.0\.0\.1:\d+"):
        asyncio.run(EtcdStore.connect(tls_etcd.endpoints, "tls", tls=tls, timeout=3))


def test_plain_http_to_an_https_etcd_is_a_clear_error(tls_etcd: EtcdCluster) -> None:
    with pytest.raises(StoreConnectionError, match=r"127\.0\.0\.1:\d+"):
        asyncio.run(EtcdStore.connect(tls_etcd.endpoints, "tls", timeout=3))


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    tls = EtcdTls(str(tmp_path / "nope.pem"))
    with pytest.raises(StoreConnectionError, match=r"nope\.pem"):
        asyncio.run(EtcdStore.connect([("127.0.0.1", 1)], "tls", tls=tls, timeout=1))
