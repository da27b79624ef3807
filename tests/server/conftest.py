"""Fixtures of the server tests: real TLS servers on 127.0.0.1."""

from __future__ import annotations

import pytest_twisted

from tests.server.harness import Harness


@pytest_twisted.async_yield_fixture
async def harness_factory(reactor, tmp_path):
    """``await harness_factory(**websocket_settings)``: a started server, stopped after."""
    made: list[Harness] = []

    async def make(**kwargs):
        harness = await Harness(reactor, tmp_path, **kwargs).start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop()
