"""A rank's main-thread stack in a few bytes: what it is doing, and a key to compare.

Design note: the stuck detector only asks "has this stack changed?", and the
verdict only asks "is this rank in a torch.distributed collective, which one,
called from where; else where is it?". A :class:`StackDigest` answers both: a
64-bit hash of the whole main-thread stack, the top frame, and the collective
with its call site. Its JSON form is under about 200 bytes, so every node can
publish its ranks' digests in the rendezvous store even at 10,000 nodes.

A rank is in a collective when one of its frames is a ``torch.distributed``
collective (``all_reduce``, ``broadcast``, ``barrier``...). The outermost such
frame names it (``all_gather_object`` calls ``all_gather``; the user called
the first), and the first frame outside ``torch/distributed`` below it is the
call site.
"""

from __future__ import annotations

from _blake2 import blake2b  # hashlib's blake2b, without loading OpenSSL on the agent's path
from dataclasses import dataclass

from rallypoint.hangs.dump import Frame, ThreadStack

TORCH_DISTRIBUTED = "/torch/distributed/"
COLLECTIVES = frozenset(
    {
        "all_reduce",
        "all_reduce_coalesced",
        "all_gather",
        "all_gather_into_tensor",
        "all_gather_object",
        "all_gather_coalesced",
        "all_to_all",
        "all_to_all_single",
        "barrier",
        "monitored_barrier",
        "broadcast",
        "broadcast_object_list",
        "reduce",
        "reduce_scatter",
        "reduce_scatter_tensor",
        "gather",
        "gather_object",
        "scatter",
        "scatter_object_list",
        "send",
        "recv",
        "send_object_list",
        "recv_object_list",
        "batch_isend_irecv",
        "init_process_group",
        "new_group",
        "destroy_process_group",
    }
)


@dataclass(frozen=True, slots=True)
class StackDigest:
    """What one rank's main thread is doing, in short."""

    key: str  # hash of every frame: equal keys, equal stacks
    top: Frame | None  # the most recent frame
    collective: str | None = None  # the torch.distributed collective it waits in
    call_site: Frame | None = None  # where the user's code called it

    @property
    def where(self) -> Frame | None:
        """The frame a person should look at: the call site, else the top frame."""
        return self.call_site or self.top

    def to_json(self) -> dict[str, object]:
        """Compact JSON for the store."""
        data: dict[str, object] = {"k": self.key}
        for name, frame in (("t", self.top), ("s", self.call_site)):
            if frame is not None:
                data[name] = [frame.file, frame.line, frame.function]
        if self.collective:
            data["c"] = self.collective
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> StackDigest:
        """The inverse of :meth:`to_json`."""

        def frame(name: str) -> Frame | None:
            raw = data.get(name)
            if not isinstance(raw, list) or len(raw) != 3:
                return None
            return Frame(str(raw[0]), int(raw[1]), str(raw[2]))

        collective = data.get("c")
        return cls(str(data["k"]), frame("t"), str(collective) if collective else None, frame("s"))


def _in_torch(frame: Frame) -> bool:
    return TORCH_DISTRIBUTED in frame.file


def _collective(frames: tuple[Frame, ...]) -> tuple[str | None, Frame | None]:
    outermost = None
    for index, frame in enumerate(frames):
        if _in_torch(frame) and frame.function in COLLECTIVES:
            outermost = index
    if outermost is None:
        return None, None
    below = (f for f in frames[outermost + 1 :] if not _in_torch(f))
    return frames[outermost].function, next(below, None)


def digest(stack: ThreadStack) -> StackDigest:
    """The digest of one thread's stack."""
    text = "\n".join(f"{f.file}:{f.line}:{f.function}" for f in stack.frames)
    key = blake2b(text.encode(), digest_size=8).hexdigest()
    collective, site = _collective(stack.frames)
    return StackDigest(key, stack.frames[0] if stack.frames else None, collective, site)
