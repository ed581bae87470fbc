"""Small files to upload: a CSV whose content no other test uploads, and Parquet bytes."""

from __future__ import annotations

import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq


def fresh_csv(rows: int = 3) -> bytes:
    """A small CSV whose content no other test uploads (so it is never deduplicated)."""
    marker = f"marker-{uuid.uuid4().hex}"
    body = "".join(f"{n},{n * 1.5},{marker}\n" for n in range(rows))
    return f"id,amount,label\n{body}".encode()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
