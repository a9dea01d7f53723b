"""Fixtures of the etcd backend's own tests (real etcd servers from tests/contract)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.etcd_servers import EtcdCluster, ServerTls, have_etcd

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


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", *_EC_KEY, "-nodes", "-days", "1",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _signed(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl(
        "req", *_EC_KEY, "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
    )  # fmt: skip
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for IP 127.0.0.1, a client certificate, and a stranger CA."""
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    # clientAuth too: with --client-cert-auth, etcd's JSON gateway dials etcd's own gRPC
    # server presenting the server certificate.
    _signed(
        d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _signed(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return d


@pytest.fixture(scope="module")
def tls_etcd(pki: Path) -> Iterator[EtcdCluster]:
    """One etcd serving https only, requiring client certificates signed by the CA."""
    tls = ServerTls(
        pki / "server.pem", pki / "server.key", pki / "ca.pem",
        client=(pki / "client.pem", pki / "client.key"),
    )  # fmt: skip
    with EtcdCluster(1, tls=tls) as cluster:
        yield cluster
