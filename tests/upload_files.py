"""Small files to upload: a CSV whose content no other test uploads, and Parquet bytes; and a
client of an API whose uploads have a limit of their own."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from aiaas.app import create_app
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import Config


@contextlib.asynccontextmanager
async def client_with_upload_limit(config: Config, limit: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose uploads may be at most `limit` bytes; same database and data
    directory as `config`'s platform."""
    limited = create_platform(config.model_copy(update={"upload_max_bytes": limit}))
    await limited.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform=limited))
        async with httpx.AsyncClient(transport=transport, base_url="http://aiaas.test") as client:
            yield client
    finally:
        await limited.stop()


def fresh_csv(rows: int = 3) -> bytes:
    """A small CSV whose content no other test uploads (so it is never deduplicated)."""
    marker = f"marker-{uuid.uuid4().hex}"
    body = "".join(f"{n},{n * 1.5},{marker}\n" for n in range(rows))
    return f"id,amount,label\n{body}".encode()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
