"""A version keeps a bounded amount of each cell in its preview and column statistics, as stored
in `dataset_versions`: cells far longer than that, uploaded as CSV or Parquet, are stored cut and
marked, so that reading a version costs little however large its cells are."""

from __future__ import annotations

import json
import random
import string
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.core.auth import Principal
from aiaas.core.data import upload_version
from aiaas.core.data.datasets.sealed_profile import version_column_stats, version_preview
from aiaas.core.data.tabular.cells import SHOWN_TEXT_CHARS, cut_text
from aiaas.core.data.tabular.normalized import PREVIEW_TRUNCATED_ROWS, write_normalized
from aiaas.core.identity.projects import create_project
from aiaas.core.platform import Platform
from support import bootstrap_admin_principal

LARGE_CELL_CHARS = 900 * 1024
"""Far past what is shown, yet under any limit on the size of a cell at upload (1 MiB or
more)."""
STORED_BYTES_LIMIT = 64 * 1024
"""What the preview, and separately the statistics, of these small tables may take stored."""


def large_text(seed: int, beginning: str = "") -> str:
    """A text of `LARGE_CELL_CHARS` letters (no CSV quoting needed), different for each seed."""
    letters = random.Random(seed).choices(string.ascii_letters, k=LARGE_CELL_CHARS)
    return (beginning + "".join(letters))[:LARGE_CELL_CHARS]


@pytest.fixture(scope="module")
async def admin(platform: Platform, admin_token: str) -> Principal:
    return await bootstrap_admin_principal(platform)


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin: Principal) -> uuid.UUID:
    slug = f"cells-{uuid.uuid4().hex[:10]}"
    return (await create_project(platform, admin, slug=slug, name=slug)).id


async def upload_and_read_back(
    platform: Platform, admin: Principal, project_id: uuid.UUID, source: Path
) -> tuple[str, str]:
    """The preview and column statistics (their JSON text) of a new version of `source`, opened
    from what its row stores, which is checked to be bounded too: the preview sealed, the
    statistics' aggregates in clear and their row values sealed."""
    added = await upload_version(
        platform, admin, project_id, dataset_name=source.stem, source=source
    )
    async with platform.metadata.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT octet_length(sealed_preview) AS preview, "
            "octet_length(column_stats::text) + octet_length(sealed_column_values) AS stats "
            "FROM dataset_versions WHERE id = $1",
            added.version.id,
        )
    assert row is not None
    assert row["preview"] < STORED_BYTES_LIMIT
    assert row["stats"] < STORED_BYTES_LIMIT
    preview = await version_preview(platform, added.version)
    stats = await version_column_stats(platform, added.version)
    return json.dumps(preview, ensure_ascii=False), json.dumps(stats, ensure_ascii=False)


def top_value_of(stats: dict[str, Any], column: str, value: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = stats[column]["top_values"]
    [entry] = [entry for entry in entries if entry["value"] == value]
    return entry


async def test_a_large_csv_cell_is_stored_cut_and_marked(
    platform: Platform, admin: Principal, project_id: uuid.UUID, tmp_path: Path
) -> None:
    large = large_text(1)
    source = tmp_path / "notes.csv"
    source.write_text(f"id,note\n1,{large}\n2,short\n3,{large}\n", encoding="utf-8")

    preview_text, stats_text = await upload_and_read_back(platform, admin, project_id, source)

    assert len(preview_text.encode()) < STORED_BYTES_LIMIT
    assert len(stats_text.encode()) < STORED_BYTES_LIMIT
    preview, stats = json.loads(preview_text), json.loads(stats_text)
    assert preview == [
        {"id": 1, "note": cut_text(large)},
        {"id": 2, "note": "short"},
        {"id": 3, "note": cut_text(large)},
    ]
    assert cut_text(large).endswith(f"… [{LARGE_CELL_CHARS} characters]")
    assert stats["note"][PREVIEW_TRUNCATED_ROWS] == [0, 2]
    assert PREVIEW_TRUNCATED_ROWS not in stats["id"]
    assert top_value_of(stats, "note", cut_text(large)) == {
        "value": cut_text(large),
        "count": 2,
        "truncated": True,
        "length": LARGE_CELL_CHARS,
    }
    assert top_value_of(stats, "note", "short") == {"value": "short", "count": 1}


async def test_large_parquet_cells_sharing_a_beginning_are_stored_cut_and_counted_apart(
    platform: Platform, admin: Principal, project_id: uuid.UUID, tmp_path: Path
) -> None:
    beginning = "same beginning " * SHOWN_TEXT_CHARS
    first, second = large_text(2, beginning), large_text(3, beginning)
    assert cut_text(first) == cut_text(second) and first != second
    source = tmp_path / "documents.parquet"
    table = pa.table(
        {
            "body": pa.array([first, second, first, "brief"], pa.large_string()),
            "title": pa.array(["a", "b", "c", None]),
        }
    )
    pq.write_table(table, source, row_group_size=2)  # the texts meet across batches

    preview_text, stats_text = await upload_and_read_back(platform, admin, project_id, source)

    assert len(preview_text.encode()) < STORED_BYTES_LIMIT
    assert len(stats_text.encode()) < STORED_BYTES_LIMIT
    preview, stats = json.loads(preview_text), json.loads(stats_text)
    assert [record["body"] for record in preview] == [cut_text(first)] * 3 + ["brief"]
    assert [record["title"] for record in preview] == ["a", "b", "c", None]
    assert stats["body"][PREVIEW_TRUNCATED_ROWS] == [0, 1, 2]
    assert PREVIEW_TRUNCATED_ROWS not in stats["title"]
    assert stats["body"]["distinct_count"] == 3
    assert stats["body"]["top_values"] == [
        {"value": cut_text(first), "count": 2, "truncated": True, "length": LARGE_CELL_CHARS},
        {"value": "brief", "count": 1},  # equal counts go in the order of their values
        {"value": cut_text(first), "count": 1, "truncated": True, "length": LARGE_CELL_CHARS},
    ]


def test_only_the_first_preview_rows_are_listed_as_cut(tmp_path: Path) -> None:
    # Long texts past the preview are counted but neither shown nor listed.
    texts = ["x" * (SHOWN_TEXT_CHARS + 1) if number % 7 == 0 else "y" for number in range(100)]
    table = pa.table({"text": pa.array(texts)})

    written = write_normalized(
        iter(table.to_batches(max_chunksize=8)),
        table.schema,
        tmp_path / "normalized.parquet",
        "derived",
    )

    assert len(written.preview) == 20
    assert written.column_stats["text"][PREVIEW_TRUNCATED_ROWS] == [0, 7, 14]
    assert [row for row, record in enumerate(written.preview) if record["text"] != "y"] == [
        0,
        7,
        14,
    ]
