"""Reserve the port worker rank 0 will serve torch's store on.

Design note: the agent does not import torch, so it cannot host torch's
TCPStore itself (torchrun's agent does). Worker rank 0 hosts it instead
(``TORCHELASTIC_USE_AGENT_STORE=False``). To make sure nothing else takes the
port between the agent's choice and the worker's bind, the agent keeps a
socket bound to it, with ``SO_REUSEADDR`` and never listening, for as long as
the job runs. Linux then refuses the port to every other bind and to outgoing
connections, but lets a listener that also sets ``SO_REUSEADDR`` bind it --
which torch's TCPStore does, in both its libuv and classic servers.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from rallypoint.errors import LaunchError


@dataclass(frozen=True, slots=True)
class PortReservation:
    """A port held for worker rank 0; :meth:`release` when the job ends."""

    sock: socket.socket

    @classmethod
    def reserve(cls, port: int = 0) -> PortReservation:
        """Hold ``port`` (0: any free port) on every local address.

        Raises:
            LaunchError: when the port is already taken.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError as exc:
            sock.close()
            raise LaunchError(
                f"MASTER_PORT {port} is already in use on this node "
                f"({exc.strerror}); choose another --master-port"
            ) from exc
        return cls(sock)

    @property
    def port(self) -> int:
        """The reserved port number."""
        return int(self.sock.getsockname()[1])

    def release(self) -> None:
        """Give the port back."""
        self.sock.close()
