"""The listening socket of torch's store: bound before any worker exists, socket module only.

Kept apart from ``host`` (asyncio, the server) so a single-node launch can bind and
listen before it spawns its first workers, and import the server only after.
"""

from __future__ import annotations

import socket

BACKLOG = 4096  # connections the kernel queues before the server accepts them


def listening_socket(port: int, backlog: int = BACKLOG) -> socket.socket:
    """A socket listening on ``port`` (0: any) of every local address, IPv6 too if present.

    Raises:
        OSError: the port is taken.
    """
    if socket.has_dualstack_ipv6():
        try:
            return socket.create_server(
                ("", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
            )
        except OSError:
            if port == 0:
                raise
            # a port free for IPv4 but not IPv6 (or no IPv6 at all): try IPv4 alone
    return socket.create_server(("", port), backlog=backlog)
