"""One port, two stores: static rendezvous's ``--master-port`` on node rank 0.

Design note: torchrun's static agents rendezvous on the TCPStore at
``--master-addr:--master-port``, and their workers use that same store, so workers see
``MASTER_PORT == --master-port``. Our agents rendezvous on our own store, so node 0
serves both on that one port and tells them apart by the first byte a client sends:
torch's client opens with ``VALIDATE`` (a zero byte), ours with ``store.wire.PREAMBLE``.
The listener peeks at that byte (``MSG_PEEK``, so nothing is consumed) and hands the
socket to the agent's rendezvous store, on this loop, or to the torch store, on its
own thread. A client that sends neither within ``SNIFF_TIMEOUT``, or something else,
is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from rallypoint.store import StoreServer
from rallypoint.store.wire import PREAMBLE
from rallypoint.torchstore.host import TorchStoreHost
from rallypoint.torchstore.wire import QueryType

logger = logging.getLogger(__name__)

SNIFF_TIMEOUT = 30.0
_TORCH_FIRST = bytes((QueryType.VALIDATE,))


class SharedPort:
    """Accepts on one port for our rendezvous store and torch's store.

    Implements ``ports.MasterPort``.

    Args:
        sock: the listening socket (``--master-addr:--master-port``).
        store: the rendezvous store, not started on a port of its own.
    """

    def __init__(self, sock: socket.socket, store: StoreServer) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._store = store
        self.torch = TorchStoreHost(None)
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, host: str, port: int, store: StoreServer) -> SharedPort:
        """Bind ``host:port`` and listen (raises OSError when taken)."""
        return cls(socket.create_server((host, port), backlog=4096), store)

    @property
    def port(self) -> int:
        """The shared port."""
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Start accepting on the running loop."""
        self._accepting = asyncio.get_running_loop().create_task(self._accept_forever())

    def serve(self) -> None:
        """Nothing to do: it serves from the start (see :meth:`start`)."""

    def fresh_store(self) -> None:
        """The next attempt's workers find an empty torch store."""
        self.torch.fresh_store()

    def release(self) -> None:
        """Stop accepting, close the port, and stop the torch store."""
        for task in [self._accepting, *self._tasks]:
            if task is not None:
                task.cancel()
        self._sock.close()
        self.torch.release()

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            task = loop.create_task(self._route(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _route(self, conn: socket.socket) -> None:
        try:
            first = await asyncio.wait_for(_peek(conn), SNIFF_TIMEOUT)
        except (TimeoutError, OSError):
            first = b""
        if first == _TORCH_FIRST:
            self.torch.adopt(conn)
        elif first == PREAMBLE[:1]:
            await self._store.adopt(conn)
        else:
            logger.warning("shared port %d: closing a client that speaks neither store", self.port)
            conn.close()


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _peek(conn: socket.socket) -> bytes:
    """The first byte ``conn`` received, left in the socket for whoever reads it next."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    conn.setblocking(False)
    loop.add_reader(conn.fileno(), _settle, ready)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
    with contextlib.suppress(BlockingIOError):
        return conn.recv(1, socket.MSG_PEEK)
    return b""
