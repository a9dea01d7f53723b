"""Nothing on the control plane is pickle.

The only use of ``pickle`` in the package is the hand-off of an API callable
(and its return value) between the agent and its own spawned child through a
file on the local disk, exactly as multiprocessing's spawn does; it never
crosses the network. This test pins that: no other module imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rallypoint

PACKAGE = Path(rallypoint.__file__).parent
LOCAL_HANDOFF = {"agent/attempt.py", "agent/launchpad.py", "agent/function_child.py"}
BANNED = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_local_callable_handoff_uses_pickle() -> None:
    users = {
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if imported_modules(p) & BANNED
    }
    assert users == LOCAL_HANDOFF


def test_network_facing_code_never_mentions_pickle() -> None:
    for folder in ("store", "rendezvous", "cli"):
        for path in (PACKAGE / folder).rglob("*.py"):
            assert "pickle" not in imported_modules(path), path
