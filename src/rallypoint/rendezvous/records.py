"""The rendezvous records kept in the store, and their JSON codec.

Keys (all under the store of one run id; see docs/rendezvous.md):

- ``join/<node id>``: who a node is (address, pid, workers, role, the port it
  reserved for worker rank 0) and the round it wants to be in next. Bound to the
  node's lease: it exists exactly as long as the node's agent is alive and
  connected, so it is also how the others know the node is there.
- ``coordinator``: the node that completes rounds (leased; taken over by
  compare-and-set when its holder dies).
- ``round``: a small header of the last completed round: number, sizes, where
  worker rank 0 listens, the job-wide restart count. Every node watches it.
- ``assign/<round>/<node id>``: one member's ranks in that round; each node
  reads its own once, so a round costs O(nodes) traffic, not O(nodes^2).
- ``members``: the last round's full member list (for the coordinator only).
- ``rerun``: the coordinator asks every member of a round to restart, and why.
- ``waiting``: the coordinator's note of who has joined the round being formed.
- ``restarts``: the job-wide count of failure restarts (an atomic counter).
- ``closed``: set once the job is over (succeeded or failed); later joins fail.
- ``done/<round>/<node id>``: a node whose workers all succeeded in that round.
- ``stacks/<node id>``: the node's ranks' stack digests (leased; see
  :mod:`rallypoint.hangs.board`), and ``job/hang``: the round and headline of a
  hang whose culprit its node is about to stop (:mod:`rallypoint.rendezvous.stacks`).

Every record is JSON with a version field ``v``; nothing is pickled. Decoding
is strict: anything else raises :class:`RendezvousStateError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rallypoint.errors import RallypointError

VERSION = 1
JOIN_PREFIX = "join/"
DONE_PREFIX = "done/"
ASSIGN_PREFIX = "assign/"
MEMBERS_KEY = "members"
JOB_PREFIX = "job/"  # the small keys every node follows, under one prefix: one watch each
ROUND_KEY = "job/round"
COORDINATOR_KEY = "job/coordinator"
RERUN_KEY = "job/rerun"
WAITING_KEY = "waiting"  # read on demand, not watched: it changes often
RESTARTS_KEY = "job/restarts"
CLOSED_KEY = "job/closed"


class RendezvousStateError(RallypointError):
    """A record in the store is not what this version of rallypoint writes."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node (agent) of the job."""

    node_id: str
    addr: str
    pid: int
    nproc: int
    role: str
    port: int  # the port this node reserved for worker rank 0
    node_rank: int = -1  # static rendezvous only

    @property
    def sort_key(self) -> tuple[str, int, str]:
        """torchrun's order for a new round: (address, pid, local id)."""
        return (self.addr, self.pid, self.node_id)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """A completed round."""

    round: int
    members: tuple[NodeRecord, ...]  # in group-rank order
    restarts: int  # job-wide failure restarts before this round

    @property
    def master(self) -> NodeRecord:
        """The node of group rank 0, where worker rank 0 serves torch's store."""
        return self.members[0]


@dataclass(frozen=True, slots=True)
class ClosedRecord:
    """Why the job is over."""

    reason: str  # "succeeded" or "failed"
    by: str
    message: str = ""


def _load(text: str, what: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RendezvousStateError(f"{what} is not JSON") from exc
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise RendezvousStateError(f"{what} has an unknown format")
    return data


def _node_fields(node: NodeRecord) -> dict[str, object]:
    return {
        "id": node.node_id,
        "addr": node.addr,
        "pid": node.pid,
        "nproc": node.nproc,
        "role": node.role,
        "port": node.port,
        "node_rank": node.node_rank,
    }


def _node_from(data: object) -> NodeRecord:
    if not isinstance(data, dict):
        raise RendezvousStateError("a node record is not an object")
    try:
        return NodeRecord(
            str(data["id"]),
            str(data["addr"]),
            int(data["pid"]),
            int(data["nproc"]),
            str(data["role"]),
            int(data["port"]),
            int(data["node_rank"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RendezvousStateError("a node record lacks a field") from exc


def encode_join(node: NodeRecord, target_round: int) -> str:
    """JSON of a join record: who the node is and the round it wants."""
    return json.dumps({"v": VERSION, **_node_fields(node), "round": target_round})


def decode_join(text: str) -> tuple[NodeRecord, int]:
    """The node and the round a join record asks for."""
    data = _load(text, "join record")
    target = data.get("round")
    if not isinstance(target, int):
        raise RendezvousStateError("a join record has no round")
    return _node_from(data), target


def encode_round(record: RoundRecord) -> str:
    """JSON of a round record."""
    return json.dumps(
        {
            "v": VERSION,
            "round": record.round,
            "restarts": record.restarts,
            "members": [_node_fields(m) for m in record.members],
        }
    )


def decode_round(text: str) -> RoundRecord:
    """Parse a round record."""
    data = _load(text, "round record")
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise RendezvousStateError("a round record has no members")
    try:
        return RoundRecord(
            int(str(data["round"])),
            tuple(_node_from(m) for m in members),
            int(str(data["restarts"])),
        )
    except (KeyError, ValueError) as exc:
        raise RendezvousStateError("a round record lacks a field") from exc


def encode_closed(record: ClosedRecord) -> str:
    """JSON of the closed record."""
    return json.dumps(
        {"v": VERSION, "reason": record.reason, "by": record.by, "message": record.message}
    )


def decode_closed(text: str) -> ClosedRecord:
    """Parse the closed record."""
    data = _load(text, "closed record")
    return ClosedRecord(
        str(data.get("reason", "")), str(data.get("by", "")), str(data.get("message", ""))
    )


@dataclass(frozen=True, slots=True)
class RoundHeader:
    """What every node needs to know of a completed round."""

    round: int
    size: int  # number of nodes
    world_size: int
    master_addr: str
    master_port: int
    restarts: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """One member's place in a round."""

    group_rank: int
    base_rank: int
    base_role_rank: int
    role_world_size: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A coordinator's note about a round: a restart request, or who has joined."""

    round: int
    text: str


def _encode(**fields: object) -> str:
    return json.dumps({"v": VERSION, **fields})


def _ints(data: dict[str, object], *names: str) -> list[int]:
    try:
        return [int(str(data[name])) for name in names]
    except (KeyError, ValueError) as exc:
        raise RendezvousStateError("a record lacks a field") from exc


def encode_header(header: RoundHeader) -> str:
    """JSON of a round header."""
    return _encode(
        round=header.round,
        size=header.size,
        world=header.world_size,
        addr=header.master_addr,
        port=header.master_port,
        restarts=header.restarts,
    )


def decode_header(text: str) -> RoundHeader:
    """Parse a round header."""
    data = _load(text, "round header")
    number, size, world, port, restarts = _ints(data, "round", "size", "world", "port", "restarts")
    return RoundHeader(number, size, world, str(data.get("addr", "")), port, restarts)


def encode_assignment(assignment: Assignment) -> str:
    """JSON of one member's assignment."""
    return _encode(
        group=assignment.group_rank,
        base=assignment.base_rank,
        role_base=assignment.base_role_rank,
        role_world=assignment.role_world_size,
    )


def decode_assignment(text: str) -> Assignment:
    """Parse one member's assignment."""
    return Assignment(*_ints(_load(text, "assignment"), "group", "base", "role_base", "role_world"))


def encode_notice(notice: Notice) -> str:
    """JSON of a notice."""
    return _encode(round=notice.round, text=notice.text)


def decode_notice(text: str) -> Notice:
    """Parse a notice."""
    data = _load(text, "notice")
    return Notice(_ints(data, "round")[0], str(data.get("text", "")))
