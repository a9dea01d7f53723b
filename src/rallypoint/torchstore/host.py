"""Host the torch store on MASTER_PORT from a thread of the agent, with a loop of its own.

Design note
-----------
The port is bound and listening as soon as ``TorchStoreHost.listen`` returns, before any
worker exists: a worker that connects before the server runs waits in the kernel's
accept queue, never on a refused connection. The server then runs on its own asyncio
loop in one thread that this object owns (``close`` stops and joins it), for three
reasons: a single-node launch spawns its first workers before the agent's loop exists
(see ``agent/launchpad.py``); the agent's loop is never slowed by a busy store, nor the
store by a loop busy with log lines; and the rendezvous that owns the port can keep it,
and the store, across every round without the supervisor knowing.

``fresh_store`` is a plain attribute swap on the server (atomic under the interpreter lock), so
it may be called from any thread; connections accepted afterwards see a fresh store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from rallypoint.torchstore.listener import listening_socket
from rallypoint.torchstore.server import ServerLimits, TorchStoreServer

__all__ = ["TorchStoreHost"]

logger = logging.getLogger(__name__)


class TorchStoreHost:
    """torch's store, served from its own thread on a port bound at construction.

    Args:
        sock: the listening socket (see ``listening_socket``), or None when another
            listener hands connections over with ``adopt``.
        limits: the server's bounds.
    """

    def __init__(self, sock: socket.socket | None, limits: ServerLimits | None = None) -> None:
        self.port = 0 if sock is None else int(sock.getsockname()[1])
        self.server = TorchStoreServer(sock, limits)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="torch-store", daemon=True)
        self._thread.start()  # not waited for: the socket already queues connections

    @classmethod
    def listen(cls, port: int = 0, limits: ServerLimits | None = None) -> TorchStoreHost:
        """Bind and listen on ``port`` now, and serve it from a new thread."""
        backlog = (limits or ServerLimits()).backlog
        return cls(listening_socket(port, backlog), limits)

    def fresh_store(self) -> None:
        """Start a fresh store for the next attempt's workers (callable from any thread)."""
        self.server.reset()

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock``, a connection accepted elsewhere (callable from any thread)."""
        self._ready.wait(timeout=10)
        if self._loop is None:
            sock.close()
            return
        asyncio.run_coroutine_threadsafe(self.server.adopt(sock), self._loop)

    def release(self) -> None:
        """Stop serving, close every connection and the port, and join the thread."""
        self._ready.wait(timeout=10)
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.server.start())
        except BaseException:
            self._ready.set()
            loop.close()
            raise
        self._loop = loop
        self._ready.set()
        logger.info("serving torch's store on port %d", self.port)
        try:
            loop.run_forever()
        finally:
            loop.close()
