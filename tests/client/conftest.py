"""The real server the SDK's live tests talk to: `aiaas serve` and one `aiaas worker` per test
module, and an admin's client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from aiaas.client import Client
from aiaas.core.config import Config
from server_watch import Server, served_with_worker


@pytest.fixture(scope="module")
async def server(
    config: Config, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Server]:
    name = request.node.name.removesuffix(".py").removeprefix("test_")
    async with served_with_worker(config, tmp_path_factory, name) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: Server, admin_token: str) -> Iterator[Client]:
    with Client(server.running.base_url, admin_token) as client:
        yield client
