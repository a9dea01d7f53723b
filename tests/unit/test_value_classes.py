"""``rallypoint.values.value``: what a frozen slotted dataclass gives, without its import cost."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from rallypoint.values import value


@value
class Point:
    """A value with a default."""

    x: int
    y: int = 0
    label: str = ""

    def norm(self) -> int:
        return abs(self.x) + abs(self.y)


@value
class Other:
    x: int
    y: int = 0
    label: str = ""


@value
class Empty:
    """No field at all."""


def test_fields_by_position_by_name_and_by_default() -> None:
    assert (Point(1).x, Point(1).y, Point(1).label) == (1, 0, "")
    assert Point(1, 2, "a") == Point(x=1, label="a", y=2)
    assert Point(3, -4).norm() == 7
    assert Empty() == Empty()


def test_equality_and_hash_go_by_type_and_fields() -> None:
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Other(1, 2)  # type: ignore[comparison-overlap]  # same fields
    assert len({Point(1, 2), Point(1, 2), Other(1, 2)}) == 2
    assert Empty() != Point(0)  # type: ignore[comparison-overlap]


def test_frozen_and_slotted() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.x
    assert not hasattr(point, "__dict__")
    assert vars(Point)["__slots__"] == ("x", "y", "label")


def test_repr_and_match() -> None:
    assert repr(Point(1, label="a")) == "Point(x=1, y=0, label='a')"
    match Point(5, 6):
        case Point(x, y):
            assert (x, y) == (5, 6)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [((), {}, "missing argument 'x'"), ((1, 2, "a", 4), {}, "takes 3"), ((1,), {"x": 2}, "'x'")],
)
def test_bad_arguments_are_refused(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)  # type: ignore[arg-type]


def test_defining_one_costs_a_fraction_of_a_dataclass() -> None:
    """Measured, not asserted tight: the point of the module is its import cost."""

    def define_values() -> None:
        for _ in range(50):

            @value
            class V:
                a: int
                b: str = ""

    def define_dataclasses() -> None:
        for _ in range(50):

            @dataclass(frozen=True, slots=True)
            class D:
                a: int
                b: str = ""

    def cost(define: object) -> float:
        started = time.process_time()
        define()  # type: ignore[operator]
        return time.process_time() - started

    ours = min(cost(define_values) for _ in range(3))
    theirs = min(cost(define_dataclasses) for _ in range(3))
    print(f"50 classes: value {ours * 1000:.1f} ms, dataclass {theirs * 1000:.1f} ms of CPU")
    assert ours < theirs
