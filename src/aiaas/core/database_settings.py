"""The settings of the platform's PostgreSQL connections, a base of `Config`
(docs/configuration.md).

They live apart from config.py to keep that module readable; `Config` inherits them, so they are
plain top-level keys (`database_pool_max_size`, `AIAAS_DATABASE_POOL_MAX_SIZE`) like every other
setting. The URLs stay in config.py with the other service URLs.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class DatabaseSettings(BaseModel):
    """How each process connects to PostgreSQL, and how long the server waits on it."""

    database_connect_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Give up connecting to PostgreSQL after this many seconds."
    )
    database_pool_min_size: int = Field(1, ge=0, description="Connections kept open per process.")
    database_pool_max_size: int = Field(10, ge=1, description="Most connections per process.")
    database_idle_transaction_timeout_s: float = Field(
        60.0,
        ge=0,
        description="PostgreSQL ends a session of this process that sits this long inside a "
        "transaction without sending anything, releasing its locks: a host cut off mid-"
        "transaction would otherwise hold them until TCP gives up, hours later. 0: never.",
    )
