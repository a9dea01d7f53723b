"""Pick and open the rendezvous a launch asks for.

- One node (``--nnodes=1``, ``--standalone``): :class:`SingleNodeRendezvous`, no store.
- ``c10d``: the agent whose address the endpoint names hosts the store (it
  can bind the endpoint; ``is_host`` in ``--rdzv-conf`` overrides), every
  agent connects to it.
- ``static`` with several nodes: node rank 0 hosts the store at
  ``--master-addr:--master-port``; ranks come from ``--node-rank``.

A node's address (for ordering and for MASTER_ADDR when it is group rank 0)
is ``--local-addr``, else the local address of the route to the store, which
other nodes can reach, unlike a host name that may only resolve locally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rallypoint.clock import Clock
from rallypoint.config import ETCD_BACKENDS, LaunchConfig
from rallypoint.endpoints import C10D_PORT, MASTER_PORT, parse_endpoint
from rallypoint.errors import ConfigError, RendezvousLostError
from rallypoint.rendezvous.base import Rendezvous
from rallypoint.rendezvous.single import SingleNodeRendezvous

if TYPE_CHECKING:
    from rallypoint.rendezvous.dynamic import Timeouts
    from rallypoint.rendezvous.machine import Settings
    from rallypoint.rendezvous.shared_port import SharedPort
    from rallypoint.store import KeyValueStore, StoreServer

logger = logging.getLogger(__name__)

TRUE = ("1", "true", "t", "yes", "y")
FALSE = ("0", "false", "f", "no", "n")


def _endpoint(config: LaunchConfig) -> tuple[str, int]:
    if config.rdzv_backend == "static":
        return config.master_addr or "127.0.0.1", config.master_port or MASTER_PORT
    endpoint = parse_endpoint(config.rdzv_endpoint, C10D_PORT)
    return endpoint.host, endpoint.port


def _conf_float(config: LaunchConfig, key: str, default: float) -> float:
    text = config.rdzv_configs.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--rdzv-conf {key}={text}: expected a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"--rdzv-conf {key}={text}: must be above 0")
    return value


def timeouts_of(config: LaunchConfig) -> Timeouts:
    """Timeouts from ``--rdzv-conf``: torchrun's keys, ``lease_ttl``, ``exit_barrier_timeout``."""
    from rallypoint.rendezvous.dynamic import Timeouts

    base = Timeouts()
    return Timeouts(
        join=_conf_float(config, "join_timeout", base.join),
        last_call=_conf_float(config, "last_call_timeout", base.last_call),
        lease_ttl=_conf_float(config, "lease_ttl", base.lease_ttl),
        exit_barrier=_conf_float(config, "exit_barrier_timeout", base.exit_barrier),
        close=_conf_float(config, "close_timeout", base.close),
    )


def _explicit_is_host(config: LaunchConfig) -> bool | None:
    text = config.rdzv_configs.get("is_host")
    if text is None:
        return None
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ConfigError(f"--rdzv-conf is_host={text}: expected true or false")


def route_address(host: str, port: int) -> str:
    """The local address this machine uses to reach ``host``."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port or 1))
        return str(probe.getsockname()[0])
    return socket.getfqdn()


async def _try_host(config: LaunchConfig, host: str, port: int) -> StoreServer | None:
    from rallypoint.store import StoreServer

    explicit = _explicit_is_host(config)
    if config.rdzv_backend == "static":
        explicit = config.node_rank == 0
    if explicit is False:
        return None
    server = StoreServer(host, port, config.run_id, config.rdzv_secret)
    try:
        await server.start()
    except OSError as exc:
        if explicit:
            raise RendezvousLostError(
                f"cannot host the rendezvous store at {host}:{port}: {exc.strerror}"
            ) from exc
        return None  # not our address, or another agent here hosts it: be a client
    logger.info("hosting the rendezvous store at %s:%d", host, server.port)
    return server


def _shared_host(
    config: LaunchConfig, host: str, port: int
) -> tuple[StoreServer, SharedPort] | None:
    """Static node rank 0 with the agent's torch store: both stores on ``--master-port``."""
    if config.rdzv_backend != "static" or config.node_rank != 0 or not config.agent_store:
        return None
    from rallypoint.rendezvous.shared_port import SharedPort
    from rallypoint.store import StoreServer

    server = StoreServer(host, port, config.run_id, config.rdzv_secret)
    try:
        shared = SharedPort.open(host, port, server)
    except OSError as exc:
        raise RendezvousLostError(
            f"cannot host the rendezvous store at {host}:{port}: {exc.strerror}"
        ) from exc
    shared.start()
    logger.info("hosting the rendezvous store and torch's store at %s:%d", host, port)
    return server, shared


async def _retrying(
    connect: Callable[[], Awaitable[KeyValueStore]], what: str, join_timeout: float, clock: Clock
) -> KeyValueStore:
    """Connect to the store, retrying while it cannot be reached, until the join timeout."""
    from rallypoint.store import StoreAuthError, StoreConnectionError

    deadline = clock.monotonic() + join_timeout
    while True:
        try:
            return await connect()
        except StoreAuthError as exc:
            raise RendezvousLostError(f"{what} refused this node: {exc}") from exc
        except StoreConnectionError as exc:
            if clock.monotonic() >= deadline:
                raise RendezvousLostError(
                    f"cannot reach {what} within {join_timeout:.0f} s: {exc}"
                ) from exc
        await clock.sleep(0.2)  # the host agent, or etcd, may still be starting


async def _store_of(
    config: LaunchConfig, timeouts: Timeouts, clock: Clock
) -> tuple[KeyValueStore, StoreServer | None, tuple[str, int], SharedPort | None]:
    """Connect to the job's store: etcd, or the built-in one (hosting it if it is ours).

    Static node rank 0 serves torch's store on the same port (the last item, see
    ``shared_port.py``), so that MASTER_PORT is ``--master-port`` as under torchrun.
    """
    if config.rdzv_backend in ETCD_BACKENDS:
        from rallypoint.store.etcd.config import connect_from_config, parse_endpoints

        endpoints, _ = parse_endpoints(config.rdzv_endpoint)
        store = await _retrying(
            lambda: connect_from_config(
                config.rdzv_endpoint, config.run_id, config.rdzv_configs, timeout=10.0
            ),
            f"etcd at {config.rdzv_endpoint}",
            timeouts.join,
            clock,
        )
        return store, None, endpoints[0], None
    from rallypoint.store import StoreClient

    host, port = _endpoint(config)
    shared = _shared_host(config, host, port)
    server = shared[0] if shared else await _try_host(config, host, port)
    bound = server.port if server is not None and shared is None else port
    client = await _retrying(
        lambda: StoreClient.connect(host, bound, config.run_id, config.rdzv_secret, timeout=10.0),
        f"the rendezvous store at {host}:{bound}",
        timeouts.join,
        clock,
    )
    return client, server, (host, port), shared[1] if shared else None


def _settings(config: LaunchConfig, timeouts: Timeouts) -> Settings:
    from rallypoint.rendezvous.machine import Settings

    static = config.rdzv_backend == "static"
    low = config.max_nodes if static else config.min_nodes
    return Settings(low, config.max_nodes, timeouts.last_call, static)


async def open_rendezvous(config: LaunchConfig, host_name: str, clock: Clock) -> Rendezvous:
    """The rendezvous for ``config``, connected and ready to join a round.

    The store and the multi-node machinery are imported only when needed: a
    single-node launch never pays for them.
    """
    if config.max_nodes == 1:
        return SingleNodeRendezvous(config, host_name)
    from rallypoint.rendezvous.dynamic import StoreRendezvous
    from rallypoint.rendezvous.ports import open_master_port
    from rallypoint.rendezvous.records import NodeRecord

    timeouts = timeouts_of(config)
    client, server, (host, port), shared = await _store_of(config, timeouts, clock)
    addr = config.local_addr or route_address(host, port)
    reservation = shared or open_master_port(0, config.agent_store)
    me = NodeRecord(
        f"{addr}_{os.getpid()}_{os.urandom(3).hex()}",
        addr,
        os.getpid(),
        config.nproc_per_node,
        config.role,
        reservation.port,
        config.node_rank if config.rdzv_backend == "static" else -1,
    )
    rendezvous = StoreRendezvous(
        client, server, me, _settings(config, timeouts), timeouts, clock, reservation
    )
    if config.rdzv_backend == "static":
        rendezvous.static_master_addr = config.master_addr
    try:
        await rendezvous.start()
    except BaseException:
        await rendezvous.close()  # the connection, the server, the lease if it was granted
        raise
    return rendezvous
