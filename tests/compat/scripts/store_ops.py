"""Exercise every TCPStore query type through torch's client; print the results as JSON.

``store_ops.py torch`` runs them against torch's own C++ server (libuv, started here);
``store_ops.py HOST PORT`` against the server at HOST:PORT. The two outputs must match.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist

T = timedelta(seconds=20)


def _client(argv: list[str]) -> tuple[dist.TCPStore, object]:
    if argv[0] == "torch":
        keep = dist.TCPStore("127.0.0.1", 0, 1, True, T, wait_for_workers=False)
        return dist.TCPStore("127.0.0.1", keep.port, 1, False, T), keep
    spare = dist.TCPStore(argv[0], int(argv[1]), 1, False, T)  # as torch's master's own client
    return dist.TCPStore(argv[0], int(argv[1]), 1, False, T), spare


def _steps(c: dist.TCPStore) -> list[tuple[str, Callable[[], object]]]:
    short = timedelta(milliseconds=300)
    return [
        ("set", lambda: c.set("k", b"v1")),
        ("get", lambda: c.get("k")),
        ("add", lambda: c.add("n", 5)),
        ("add-neg", lambda: c.add("n", -7)),
        ("cas-match", lambda: c.compare_set("k", b"v1", b"v2")),
        ("cas-differ", lambda: c.compare_set("k", b"zz", b"v3")),
        ("cas-absent-empty", lambda: c.compare_set("c1", b"", b"new")),
        ("cas-absent-x", lambda: c.compare_set("c2", b"x", b"new")),
        ("check", lambda: (c.check(["k"]), c.check(["k", "nope"]), c.check([]))),
        ("wait", lambda: c.wait(["k", "n"])),
        ("wait-timeout", lambda: c.wait(["never"], short)),
        ("after-timeout", lambda: c.get("k")),
        ("num-keys", lambda: c.num_keys()),
        ("delete", lambda: (c.delete_key("k"), c.delete_key("k"))),
        ("append", lambda: (c.append("a", b"x"), c.append("a", b"y"), c.get("a"))),
        ("multi-get", lambda: c.multi_get(["a", "n"])),
        ("multi-set", lambda: (c.multi_set(["p", "q"], [b"1", b"2"]), c.multi_get(["q", "p"]))),
        ("queue-push", lambda: (c.queue_push("qq", b"i1"), c.queue_push("qq", b"i2"))),
        ("queue-len", lambda: c.queue_len("qq")),
        ("queue-pop", lambda: (c.queue_pop("qq"), c.queue_pop("qq", block=False))),
        ("queue-pop-empty", lambda: c.queue_pop("qq", block=False)),
        ("queue-pop-timeout", lambda: (c.set_timeout(short), c.queue_pop("qq"))),
        ("get-missing-timeout", lambda: c.get("missing")),
        ("list-keys", lambda: sorted(c.list_keys())),
        ("num-keys-end", lambda: c.num_keys()),
        ("add-not-a-number", lambda: (c.set("text", b"abc"), c.add("text", 1))),
    ]


def _describe(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return value


def main() -> None:
    client, _keep = _client(sys.argv[1:])
    results = {}
    for name, step in _steps(client):
        try:
            results[name] = _describe(step())
        except Exception as exc:  # the error's type is part of the behaviour compared
            results[name] = f"raised {type(exc).__name__}"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
