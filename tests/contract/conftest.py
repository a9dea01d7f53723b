"""Fixtures of the store contract suite; the backends themselves are in store_backends.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from tests.contract.store_backends import BACKENDS, Scenario


@pytest.fixture(params=[pytest.param(name, marks=marks) for name, (_, marks) in BACKENDS.items()])
def contract(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Run an async scenario against a fresh store of each backend, within 10 s."""
    backend = BACKENDS[request.param][0]

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            async with asyncio.timeout(10), backend() as harness:
                await scenario(harness)

        asyncio.run(main())

    return run
