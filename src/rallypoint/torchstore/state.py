"""The keys, queues and waiters of one torch store, with no sockets and no clock.

Design note
-----------
``TorchStoreState.apply(owner, request)`` answers one request of connection ``owner`` and
returns its reply, or None for requests torch's client expects no reply to (``SET``,
``APPEND``, ``MULTI_SET``, ``QUEUE_PUSH``, ``VALIDATE``) and for a ``WAIT`` that must wait.
A wait is an event, never a poll: it is filed under each key it still misses, with a
count of them, and every write that creates a key (set, compare-set, add, append,
multi-set, queue push) takes the waiters of that key, counts down, and queues a
``STOP_WAITING`` for each waiter whose count reaches zero. The driver collects those with
``take_wakeups`` after each call, as ``Wakeup(owner, reply)`` values.

The rules follow torch 2.13's libuv server, checked byte for byte against it
(``tests/compat/test_torch_store_wire.py``):

* a key deleted after a waiter saw it appear does not count again;
* queues live beside the keys: ``WAIT``, ``CHECK`` and a blocking pop see a key that is a
  non-empty queue as present, ``GETNUMKEYS`` and ``LIST_KEYS`` count only plain keys;
* ``GET`` of a missing key answers an empty value;
* ``COMPARE_SET`` on a missing key sets it only when ``expected`` is empty, and answers
  the value the key holds afterwards (or ``expected`` when nothing was set);
* ``ADD`` parses the value as ``std::stoll`` does (leading blanks, a sign, digits, then
  anything) and wraps around at 64 bits; a value that does not parse ends the connection;
* ``CANCEL_WAIT`` ends every pending wait of the connection and is always answered
  ``WAIT_CANCELED``, whether a wait was pending or not (torch's client relies on that to
  resynchronise after a timed-out wait).

Timeouts are the client's: it stops waiting, sends ``CANCEL_WAIT`` and raises. A client
that dies mid-wait is dropped with ``drop_owner``, which forgets its waiters.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from rallypoint.torchstore.wire import (
    VALIDATION_MAGIC,
    Add,
    Append,
    BytesReply,
    CancelWait,
    Check,
    CheckReply,
    CompareSet,
    DeleteKey,
    Get,
    IntReply,
    KeysReply,
    ListKeys,
    MultiGet,
    MultiSet,
    NumKeys,
    Ping,
    PingReply,
    QueueLen,
    QueuePop,
    QueuePopReply,
    QueuePush,
    Reply,
    Request,
    Set,
    TorchProtocolError,
    Validate,
    ValuesReply,
    Wait,
    WaitReply,
    WaitResponse,
)

__all__ = ["TorchStoreState", "Wakeup"]

_STOLL: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_INT64: Final = 1 << 64
_STOP = WaitReply(WaitResponse.STOP_WAITING)
_CANCELED = WaitReply(WaitResponse.WAIT_CANCELED)
_NONE: Final[list[Wakeup]] = []  # take_wakeups' answer when there are none (never mutated)


@dataclass(frozen=True, slots=True)
class Wakeup:
    """A reply to a wait of connection ``owner``, produced by another request."""

    owner: int
    reply: Reply


@dataclass(eq=False, slots=True)
class _Waiter:
    owner: int
    missing: int
    keys: list[bytes] = field(default_factory=list)


def stoll(value: bytes) -> int:
    """Parse ``value`` as ``std::stoll`` does; raise TorchProtocolError when it cannot."""
    match = _STOLL.match(value)
    if match is None:
        raise TorchProtocolError(f"value {value[:40]!r} is not an integer")
    number = int(match.group(1))
    if not -(1 << 63) <= number < (1 << 63):
        raise TorchProtocolError(f"value {value[:40]!r} is out of the int64 range")
    return number


def _wrap(number: int) -> int:
    number %= _INT64
    return number - _INT64 if number >= 1 << 63 else number


class TorchStoreState:
    """The key table, the queues and the pending waits of one store."""

    def __init__(self) -> None:
        self.keys: dict[bytes, bytes] = {}
        self.queues: dict[bytes, deque[bytes]] = {}
        self._waiting: dict[bytes, list[_Waiter]] = {}
        self._by_owner: dict[int, list[_Waiter]] = {}
        self._wakeups: list[Wakeup] = []
        self._handlers: dict[type, Callable[[int, Any], Reply | None]] = {
            Validate: self._validate,
            Ping: self._ping,
            Set: self._set,
            CompareSet: self._compare_set,
            Get: self._get,
            Add: self._add,
            Check: self._check,
            Wait: self._wait,
            NumKeys: self._num_keys,
            DeleteKey: self._delete,
            Append: self._append,
            MultiGet: self._multi_get,
            MultiSet: self._multi_set,
            CancelWait: self._cancel,
            QueuePush: self._queue_push,
            QueuePop: self._queue_pop,
            QueueLen: self._queue_len,
            ListKeys: self._list_keys,
        }

    @property
    def pending_waits(self) -> int:
        """How many waits have not ended yet."""
        return sum(len(waiters) for waiters in self._by_owner.values())

    def apply(self, owner: int, request: Request) -> Reply | None:
        """Answer one request of ``owner``; None when nothing is to be sent now.

        Raises:
            TorchProtocolError: the request cannot be answered (the connection must end).
        """
        return self._handlers[type(request)](owner, request)

    def take_wakeups(self) -> list[Wakeup]:
        """The wait replies the last calls produced, in order; clears them."""
        if not self._wakeups:
            return _NONE
        wakeups, self._wakeups = self._wakeups, []
        return wakeups

    def drop_owner(self, owner: int) -> None:
        """Forget every pending wait of ``owner`` (its connection is gone)."""
        for waiter in self._by_owner.pop(owner, ()):
            self._unfile(waiter)

    # --- presence and wakeups ------------------------------------------------------------

    def present(self, key: bytes) -> bool:
        """Whether ``key`` is a key or a non-empty queue."""
        return key in self.keys or key in self.queues

    def _appeared(self, key: bytes) -> None:
        for waiter in self._waiting.pop(key, ()):
            waiter.missing -= 1
            if waiter.missing == 0:
                self._by_owner[waiter.owner].remove(waiter)
                self._wakeups.append(Wakeup(waiter.owner, _STOP))

    def _unfile(self, waiter: _Waiter) -> None:
        for key in waiter.keys:
            waiters = self._waiting.get(key)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[key]

    def _store(self, key: bytes, value: bytes) -> None:
        self.keys[key] = value
        if key in self._waiting:
            self._appeared(key)

    # --- handlers ----------------------------------------------------------------------

    def _validate(self, _owner: int, request: Validate) -> None:
        if request.magic != VALIDATION_MAGIC:
            raise TorchProtocolError(f"bad validation magic {request.magic:#x}")

    def _ping(self, _owner: int, request: Ping) -> Reply:
        return PingReply(request.nonce)

    def _get(self, _owner: int, request: Get) -> Reply:
        return BytesReply(self.keys.get(request.key, b""))

    def _num_keys(self, _owner: int, _request: NumKeys) -> Reply:
        return IntReply(len(self.keys))

    def _list_keys(self, _owner: int, _request: ListKeys) -> Reply:
        return KeysReply(tuple(self.keys))

    def _set(self, _owner: int, request: Set) -> None:
        self._store(request.key, request.value)

    def _compare_set(self, _owner: int, request: CompareSet) -> Reply:
        current = self.keys.get(request.key)
        if current is None and request.expected:
            return BytesReply(request.expected)
        if current is not None and current != request.expected:
            return BytesReply(current)
        self._store(request.key, request.desired)
        return BytesReply(request.desired)

    def _add(self, _owner: int, request: Add) -> Reply:
        current = self.keys.get(request.key)
        total = _wrap((0 if current is None else stoll(current)) + request.amount)
        self._store(request.key, str(total).encode())
        return IntReply(total)

    def _check(self, _owner: int, request: Check) -> Reply:
        return CheckReply(all(self.present(key) for key in request.keys))

    def _wait(self, owner: int, request: Wait) -> Reply | None:
        missing = [key for key in dict.fromkeys(request.keys) if not self.present(key)]
        if not missing:
            return _STOP
        waiter = _Waiter(owner, len(missing), missing)
        for key in missing:
            self._waiting.setdefault(key, []).append(waiter)
        self._by_owner.setdefault(owner, []).append(waiter)
        return None

    def _delete(self, _owner: int, request: DeleteKey) -> Reply:
        return IntReply(0 if self.keys.pop(request.key, None) is None else 1)

    def _append(self, _owner: int, request: Append) -> None:
        self._store(request.key, self.keys.get(request.key, b"") + request.value)

    def _multi_get(self, _owner: int, request: MultiGet) -> Reply:
        return ValuesReply(tuple(self.keys.get(key, b"") for key in request.keys))

    def _multi_set(self, _owner: int, request: MultiSet) -> None:
        for key, value in zip(request.keys, request.values, strict=True):
            self._store(key, value)

    def _cancel(self, owner: int, _request: CancelWait) -> Reply:
        self.drop_owner(owner)
        return _CANCELED

    def _queue_push(self, _owner: int, request: QueuePush) -> None:
        self.queues.setdefault(request.key, deque()).append(request.value)
        if request.key in self._waiting:
            self._appeared(request.key)

    def _queue_pop(self, _owner: int, request: QueuePop) -> Reply:
        queue = self.queues.get(request.key)
        if not queue:
            return QueuePopReply(None)
        value = queue.popleft()
        if not queue:
            del self.queues[request.key]
        return QueuePopReply(value)

    def _queue_len(self, _owner: int, request: QueueLen) -> Reply:
        return IntReply(len(self.queues.get(request.key, ())))
