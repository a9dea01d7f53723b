"""The port at MASTER_ADDR:MASTER_PORT, and who serves torch's store on it.

Design note: by default the agent serves torch's store itself, torch-free
(:mod:`rallypoint.torchstore`), as torchrun's agent does, so the workers get
``TORCHELASTIC_USE_AGENT_STORE=True``. Every agent opens that port when it starts
and keeps it for the whole job; whichever agent becomes group rank 0 of a round
is the one its workers reach. Before this node joins a round it starts a fresh
store generation (:meth:`MasterPort.fresh_store`): every worker of the next
attempt connects after that, so none of them can read a key of an earlier attempt,
and a worker of an earlier attempt still alive keeps its own, older generation.

Opt-in, for jobs whose store traffic one Python thread cannot carry (see
``bench/README.md``): ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, torchrun's own
switch, makes worker rank 0 host torch's store inside ``init_process_group``
(``TORCHELASTIC_USE_AGENT_STORE=False``). The agent then only reserves the port:
it keeps a socket bound to it, with ``SO_REUSEADDR`` and never listening, for as
long as the job runs. Linux then refuses the port to every other bind and to
outgoing connections, but lets a listener that also sets ``SO_REUSEADDR`` bind
it -- which torch's TCPStore does, in both its libuv and classic servers.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rallypoint.errors import LaunchError

if TYPE_CHECKING:
    from rallypoint.torchstore.host import TorchStoreHost


class MasterPort(Protocol):
    """The port this node offers as MASTER_PORT, served or reserved."""

    @property
    def port(self) -> int:
        """The port number."""
        ...

    def serve(self) -> None:
        """Answer the workers from now on, if this port serves torch's store."""
        ...

    def fresh_store(self) -> None:
        """Workers that connect from now on find an empty store (serving it if not yet)."""
        ...

    def release(self) -> None:
        """Give the port back (and stop serving it)."""
        ...


def _taken(port: int, exc: OSError) -> LaunchError:
    return LaunchError(
        f"MASTER_PORT {port} is already in use on this node "
        f"({exc.strerror}); choose another --master-port"
    )


def open_master_port(port: int, agent_store: bool) -> MasterPort:
    """Serve torch's store on ``port`` (0: any free port), or only reserve it.

    Raises:
        LaunchError: the port is already taken.
    """
    if not agent_store:
        return PortReservation.reserve(port)
    from rallypoint.torchstore.listener import listening_socket

    try:
        return StoreOnPort(listening_socket(port))
    except OSError as exc:
        raise _taken(port, exc) from exc


class StoreOnPort:
    """torch's store on a port that listens at once; its server starts at :meth:`serve`.

    Until then a worker's connection waits in the kernel's accept queue, so a
    single-node launch spawns its first workers before it imports the server
    (asyncio and the codec, tens of ms) and starts the server's thread.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._host: TorchStoreHost | None = None

    def serve(self) -> None:
        """Start the server's thread, once."""
        if self._host is None:
            from rallypoint.torchstore.host import TorchStoreHost

            self._host = TorchStoreHost(self._sock)

    def fresh_store(self) -> None:
        """Workers that connect from now on find an empty store."""
        self.serve()
        assert self._host is not None
        self._host.fresh_store()

    def release(self) -> None:
        """Stop serving and close the port."""
        if self._host is None:
            self._sock.close()
        else:
            self._host.release()


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
            raise _taken(port, exc) from exc
        return cls(sock)

    @property
    def port(self) -> int:
        """The reserved port number."""
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        """Nothing to do: worker rank 0 serves the store."""

    def fresh_store(self) -> None:
        """Nothing to do: each attempt's worker rank 0 starts its own store."""

    def release(self) -> None:
        """Give the port back."""
        self.sock.close()
