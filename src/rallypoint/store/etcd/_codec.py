"""How keys, values and integers look in the etcd gateway's JSON (pure functions).

The gateway carries keys and values as base64 and int64 fields as decimal strings.
Keys and values are encoded as UTF-8 with ``surrogatepass``, so any Python str
round-trips, as with the built-in store.
"""

from __future__ import annotations

import base64
from typing import Any

from rallypoint.store._errors import StoreProtocolError

_ENC = "utf-8"
_ERRORS = "surrogatepass"  # any Python str round-trips, as with the built-in store


def b64(text: str) -> str:
    """``text`` as the gateway's base64 bytes field."""
    return base64.b64encode(text.encode(_ENC, _ERRORS)).decode("ascii")


def unb64(data: object) -> str:
    """The text of a base64 bytes field (absent means empty).

    Raises:
        StoreProtocolError: it is not a string, not base64, or not UTF-8.
    """
    if data is None:
        return ""
    if not isinstance(data, str):
        raise StoreProtocolError(f"etcd sent a non-string key or value: {data!r}")
    try:
        return base64.b64decode(data, validate=True).decode(_ENC, _ERRORS)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreProtocolError(f"etcd sent a key or value that is not UTF-8: {exc}") from exc


def int_field(obj: dict[str, Any], name: str) -> int:
    """An int64 field of the gateway's JSON (written as a string; absent means 0)."""
    raw = obj.get(name, 0)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StoreProtocolError(f"etcd sent {name}={raw!r}, not an integer") from None


def header_revision(reply: dict[str, Any]) -> int:
    """The store revision in a reply's header."""
    return int_field(reply.get("header", {}), "revision")


def prefix_range(full: str) -> dict[str, Any]:
    """The ``key`` and ``range_end`` fields that cover every key starting with ``full``."""
    key = full.encode(_ENC, _ERRORS)
    return {
        "key": base64.b64encode(key).decode(),
        "range_end": base64.b64encode(_prefix_end(key)).decode(),
    }


def _prefix_end(key: bytes) -> bytes:
    """The range end that covers every key starting with ``key`` (etcd's ``WithPrefix``)."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key
