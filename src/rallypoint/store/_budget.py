"""A bound on what one frame may decode into, checked before ``json`` builds anything.

Design note
-----------
A frame's byte length does not bound its decoded size: 16 MiB of ``[{},{},...]`` becomes
about 400 MiB of Python objects. The C JSON decoder has no hook per array element, so the
budget is checked on the bytes, before they are parsed: strings are cut out (a regular
expression, at C speed), then the structural characters that remain are counted. Every
value in an array or object is preceded by ``[``, ``{`` or ``,``, so their count bounds
the number of elements; innermost ``[]``/``{}`` pairs are then removed one level per pass,
and the number of passes is the nesting depth (stopping as soon as the budget is spent).
Invalid JSON may be over-counted and refused here instead of by the parser, which is fine:
it would be refused anyway.

Frames of at most ``SMALL_FRAME`` bytes are not scanned: whatever they hold decodes into
at most about 25 times their size (an empty ``{}`` costs 64 bytes for 3 bytes of JSON), and
the strict field checks of ``wire.decode_message`` refuse any nesting a message does not
have. Scanning them would double the cost of decoding a typical request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["REPLY_BUDGET", "REQUEST_BUDGET", "SMALL_FRAME", "DecodeBudget", "over_budget"]

SMALL_FRAME: Final = 4096
"""Frames up to this many bytes are exempt from the scan (see the design note)."""

_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST: Final = re.compile(rb"\[\]|\{\}")
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True, slots=True)
class DecodeBudget:
    """The most one frame may decode into.

    Attributes:
        max_elements: values inside arrays and objects, counted over the whole frame.
        max_depth: nesting of arrays and objects (a flat object is depth 1).
    """

    max_elements: int
    max_depth: int


REQUEST_BUDGET: Final = DecodeBudget(max_elements=32, max_depth=1)
"""What a server accepts: every client message is one flat object of a few fields."""

REPLY_BUDGET: Final = DecodeBudget(max_elements=1_000_000, max_depth=3)
"""What a client accepts: a ``range_reply`` is an object holding a list of lists."""


def over_budget(body: bytes, budget: DecodeBudget) -> str | None:
    """Why ``body`` would decode into more than ``budget`` allows, or None if it fits."""
    if len(body) <= SMALL_FRAME:
        return None
    bare = _STRING.sub(b"", body) if b'"' in body else body
    elements = bare.count(b",") + bare.count(b"[") + bare.count(b"{")
    if elements > budget.max_elements:
        return f"frame holds more than {budget.max_elements} JSON elements"
    brackets = bare.translate(None, _NOT_BRACKET)
    for _ in range(budget.max_depth):
        if not brackets:
            return None
        shorter = _INNERMOST.sub(b"", brackets)
        if len(shorter) == len(brackets):
            return "frame JSON has unbalanced brackets"
        brackets = shorter
    return None if not brackets else f"frame JSON is nested deeper than {budget.max_depth}"
