"""TLS settings of the etcd backend: which PEM files to trust and present."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from rallypoint.store._errors import StoreConnectionError

__all__ = ["EtcdTls"]


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """TLS settings for https endpoints (paths to PEM files).

    Attributes:
        cacert: the CA bundle that signed the servers' certificates (None: system CAs).
        cert: this client's certificate, for etcd's ``--client-cert-auth``.
        key: the private key of ``cert`` (None when ``cert`` holds it too).
    """

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that checks the server and presents ``cert`` if given.

        Raises:
            StoreConnectionError: a file cannot be read or is not a certificate or key.
        """
        try:
            ctx = ssl.create_default_context(cafile=self.cacert)
            if self.cert is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f"{k}={v}" for k, v in self._files().items())
            raise StoreConnectionError(f"cannot load the etcd TLS files ({files}): {exc}") from exc
        return ctx

    def _files(self) -> dict[str, str]:
        pairs = {"cacert": self.cacert, "cert": self.cert, "key": self.key}
        return {k: v for k, v in pairs.items() if v is not None}
