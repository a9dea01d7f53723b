"""The hand-over message: what the agent encodes, the standby decodes, for any argv and env."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from rallypoint.workers._standby import decode_order
from rallypoint.workers.standby import encode_order

# What can be in an argv or an environment: no NUL; names without "="; any other
# character, including lone surrogates (bytes that were not UTF-8, as os.fsdecode gives them)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))
RAW = st.binary().filter(lambda b: b"\0" not in b).map(os.fsdecode)
VALUE = TEXT | RAW
NAME = VALUE.filter(lambda n: n and "=" not in n)


@settings(max_examples=200)
@given(st.lists(VALUE, min_size=1), st.dictionaries(NAME, VALUE))
def test_round_trip(argv: list[str], env: dict[str, str]) -> None:
    decoded_argv, entries = decode_order(encode_order(argv, env))
    assert decoded_argv == argv
    pairs = [entry.partition(b"=") for entry in entries]
    assert {os.fsdecode(k): os.fsdecode(v) for k, _, v in pairs} == env
    assert [os.fsdecode(k) for k, _, _ in pairs] == list(env)  # the worker's order
