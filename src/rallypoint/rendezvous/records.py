"""The rendezvous records kept in the store, and their JSON codec.

Keys (all under the store of one run id; see docs/rendezvous.md):

- ``node/<node id>``: who a node is (address, pid, workers, role, the port it
  reserved for worker rank 0). Bound to the node's lease: it exists exactly as
  long as the node's agent is alive and connected.
- ``join/<node id>``: the round this node wants to be in next (also leased).
- ``round``: the last completed round: its number, members in group-rank order,
  where worker rank 0 listens, and the job-wide restart count.
- ``restarts``: the job-wide count of failure restarts (an atomic counter).
- ``closed``: set once the job is over (succeeded or failed); later joins fail.
- ``done/<round>/<node id>``: a node whose workers all succeeded in that round.

Every record is JSON with a version field ``v``; nothing is pickled. Decoding
is strict: anything else raises :class:`RendezvousStateError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rallypoint.errors import RallypointError

VERSION = 1
NODE_PREFIX = "node/"
JOIN_PREFIX = "join/"
DONE_PREFIX = "done/"
ROUND_KEY = "round"
RESTARTS_KEY = "restarts"
CLOSED_KEY = "closed"


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

    def rank_of(self, node_id: str) -> int | None:
        """This node's group rank, or None if it is not a member."""
        for rank, member in enumerate(self.members):
            if member.node_id == node_id:
                return rank
        return None


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


def encode_node(node: NodeRecord) -> str:
    """JSON of a node record."""
    return json.dumps({"v": VERSION, **_node_fields(node)})


def decode_node(text: str) -> NodeRecord:
    """Parse a node record."""
    return _node_from(_load(text, "node record"))


def encode_join(target_round: int) -> str:
    """JSON of a join record."""
    return json.dumps({"v": VERSION, "round": target_round})


def decode_join(text: str) -> int:
    """The round a join record asks for."""
    value = _load(text, "join record").get("round")
    if not isinstance(value, int):
        raise RendezvousStateError("a join record has no round")
    return value


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
