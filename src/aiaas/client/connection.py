"""What the objects a `Client` answers need of it, as a protocol: so that they do not import
the client, which imports them."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from aiaas.client.api import SyncApi


class Client(Protocol):
    """What the objects here need of `aiaas.client.Client`."""

    api: SyncApi
    http: httpx.Client
    url: str
    token: str
    timeout: float

    def dataset_version(self, id: str) -> Any:
        """The `DatasetVersion` of global id `id` (typed where it is defined: its module sits
        above the objects that need one)."""
