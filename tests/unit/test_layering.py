"""Imports point down only (docs/architecture.md): read every module with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "rallypoint"
LAYERS: dict[str, int] = {
    "errors": 1,
    **dict.fromkeys(
        ("signals", "endpoints", "clock", "ids", "tasks", "devices", "hostlist", "values"), 2
    ),
    "config": 3,
    **dict.fromkeys(("store", "torchstore", "workers", "logs", "events", "health", "hangs"), 4),
    **dict.fromkeys(("rendezvous", "failures"), 5),
    "agent": 6,
    **dict.fromkeys(("cli", "api"), 7),
    **dict.fromkeys(("__init__", "__main__"), 8),
}


def part_of(path: Path) -> str:
    """The part a source file belongs to: its package under rallypoint, or its module."""
    first = path.relative_to(SRC).parts[0]
    return first.removesuffix(".py")


def module_name(path: Path) -> str:
    """``.../rallypoint/store/etcd/_kv.py`` -> ``rallypoint.store.etcd._kv``."""
    parts = ("rallypoint", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a ``from ... import`` names, relative ones resolved against ``path``."""
    if node.level == 0:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imported_parts(path: Path) -> set[str]:
    """Every part of rallypoint that ``path`` imports (TYPE_CHECKING imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            module = absolute(node, path)
            names = [module]
            if module == "rallypoint":
                names = [f"rallypoint.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("rallypoint.")}
    return found


def wrong_way(path: Path, source: str) -> list[str]:
    """The parts ``path`` (of part ``source``) imports that are not below it."""
    return sorted(
        target
        for target in imported_parts(path) - {source}
        if LAYERS.get(target, 99) >= LAYERS[source]
    )


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_part_has_a_layer() -> None:
    assert {part_of(p) for p in SOURCES} == set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(SRC)) for p in SOURCES])
def test_imports_point_down(path: Path) -> None:
    source = part_of(path)
    assert wrong_way(path, source) == [], f"{path.relative_to(SRC)} imports up or sideways"


def test_errors_imports_no_part() -> None:
    assert imported_parts(SRC / "errors.py") == set()


def test_relative_imports_are_resolved() -> None:
    kv = SRC / "store" / "etcd" / "_kv.py"
    assert module_name(kv) == "rallypoint.store.etcd._kv"
    node = ast.parse("from ..api import x").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert absolute(node, kv) == "rallypoint.store.api"


@pytest.mark.parametrize(
    ("part", "line"),
    [
        ("workers", "from rallypoint.failures.record import record"),  # the old cycle
        ("errors", "if TYPE_CHECKING:\n    from rallypoint.failures.report import R"),
        ("store", "import rallypoint.store.x, rallypoint.agent.y"),
        ("config", "from rallypoint import api"),
    ],
)
def test_the_check_sees_a_wrong_way_import(part: str, line: str, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"  # absolute imports only: no need to sit in the tree
    probe.write_text(line + "\n", encoding="utf-8")
    assert wrong_way(probe, part) != []
