"""A dataset version's preview and the row values among its statistics, sealed in its row.

What a version's row keeps, field by field:

- in clear: ids, dataset, number, content hash, source format, row count, size, the columns'
  names and types, the lineage and transformation steps, and in `column_stats` each column's
  aggregates (null fraction, distinct count, mean, std, whether counts are exact, and which
  preview rows hold a cut text). They describe the table without holding any row of it.
- sealed with the project's data key (`governance.sealed_values`), bound to the version's row:
  `sealed_preview`, the first rows, and `sealed_column_values`, each column's min, max and top
  values (`tabular.profile.ROW_VALUE_STATISTICS`): a minimum is one row's value and a top value
  a cell's text, so they are data, not statistics about it.

They are sealed in the row rather than kept only in the version's artifact because every listing
of versions may show them: opening a few kilobytes costs microseconds, reading the artifact
seconds.

Revision 0008 dropped the plaintext previews and row values of the versions written before it
(a migration runs without the master key and cannot seal). Those versions have NULL sealed
columns until the first read of either: it profiles the version's sealed artifact again, seals
the two values and stores them (`PROFILE_REBUILDS`). The aggregates were kept by the migration,
so only row values are recomputed; they come out as they were, except the top values of a text
column with more than `profile.COUNTED_CAP` distinct values, approximate before and after. A
deleted version whose artifact was collected already has nothing left to rebuild from: it
answers an empty preview and its aggregates alone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pyarrow.parquet as pq

from aiaas.core.data.datasets.files import scratch
from aiaas.core.data.datasets.records import DatasetVersion
from aiaas.core.data.tabular.normalized import NormalizedTable, Preview
from aiaas.core.data.tabular.profile import ROW_VALUE_STATISTICS, TableProfile
from aiaas.core.errors import ArtifactNotFoundError
from aiaas.core.governance.sealed_values import SealedColumn, jsonb_key_order, jsonb_ordered
from aiaas.core.governance.vault import VAULT
from aiaas.core.platform import ProcessService

if TYPE_CHECKING:
    from aiaas.core.platform import Platform

logger = logging.getLogger(__name__)

PREVIEW = SealedColumn("dataset_versions", "sealed_preview")
COLUMN_VALUES = SealedColumn("dataset_versions", "sealed_column_values")
REBUILD_BATCH_ROWS = 64 * 1024

ColumnStats = dict[str, dict[str, Any]]


def split_column_stats(column_stats: ColumnStats) -> tuple[ColumnStats, ColumnStats]:
    """Each column's statistics as (aggregates, row values)."""
    aggregates = {
        name: {key: value for key, value in stats.items() if key not in ROW_VALUE_STATISTICS}
        for name, stats in column_stats.items()
    }
    values = {
        name: {key: value for key, value in stats.items() if key in ROW_VALUE_STATISTICS}
        for name, stats in column_stats.items()
    }
    return aggregates, values


def merged_column_stats(aggregates: ColumnStats, values: ColumnStats) -> ColumnStats:
    """The whole statistics, in the order the jsonb column that held them answered. Both parts
    are in that order already (one from jsonb, the other sealed so): only each column's keys
    are merged and sorted."""
    return {
        name: dict(
            sorted({**stats, **values.get(name, {})}.items(), key=lambda i: jsonb_key_order(i[0]))
        )
        for name, stats in aggregates.items()
    }


@dataclass(frozen=True)
class SealedProfile:
    """What a new version's row stores of its profile, sealed for the row `version_id`."""

    version_id: UUID
    column_stats: ColumnStats
    """The aggregates, in clear."""
    sealed_preview: bytes
    sealed_column_values: bytes


async def seal_profile(
    platform: Platform, project_id: UUID, table: NormalizedTable
) -> SealedProfile:
    """The profile of a version about to be recorded, sealed for a fresh version id (the row
    must be inserted with it: the seal is bound to it)."""
    key = await platform.service(VAULT).data_key(project_id)
    version_id = uuid4()
    aggregates, values = split_column_stats(table.column_stats)
    return SealedProfile(
        version_id=version_id,
        column_stats=aggregates,
        sealed_preview=PREVIEW.seal_json(key, project_id, version_id, table.preview),
        sealed_column_values=COLUMN_VALUES.seal_json(key, project_id, version_id, values),
    )


# Reading -------------------------------------------------------------------------------------


async def version_preview(platform: Platform, version: DatasetVersion) -> list[dict[str, Any]]:
    """The version's first rows. `ArtifactIntegrityError` if its sealed preview was altered or
    belongs to another row."""
    if version.sealed_preview is None:
        return (await platform.service(PROFILE_REBUILDS).rebuilt(version)).preview
    key = await platform.service(VAULT).data_key(version.project_id)
    preview: list[dict[str, Any]] = PREVIEW.open_json(
        key, version.project_id, version.id, version.sealed_preview
    )
    return preview


async def version_column_stats(platform: Platform, version: DatasetVersion) -> ColumnStats:
    """The version's whole column statistics: its aggregates and its row values."""
    if version.sealed_column_values is None:
        values = (await platform.service(PROFILE_REBUILDS).rebuilt(version)).column_values
    else:
        key = await platform.service(VAULT).data_key(version.project_id)
        values = COLUMN_VALUES.open_json(
            key, version.project_id, version.id, version.sealed_column_values
        )
    return merged_column_stats(version.column_stats, values)


# Rebuilding what revision 0008 dropped -----------------------------------------------------


@dataclass(frozen=True)
class OpenedProfile:
    preview: list[dict[str, Any]]
    column_values: ColumnStats


def profile_file(path: Path) -> OpenedProfile:
    """The preview and the row values of a normalized Parquet file, read batch by batch the way
    `write_normalized` profiled it, so memory stays bounded whatever its size."""
    reader = pq.ParquetFile(path)
    profile = TableProfile(reader.schema_arrow)
    preview = Preview()
    for batch in reader.iter_batches(batch_size=REBUILD_BATCH_ROWS):
        profile.update(batch)
        preview.add(batch)
    _, values = split_column_stats(profile.result())
    # In the order a sealed value reads back in, so that the first read answers as later ones.
    return OpenedProfile(
        preview=jsonb_ordered(preview.records), column_values=jsonb_ordered(values)
    )


class ProfileRebuilds:
    """Rebuilds the sealed profile of versions written before revision 0008, one at a time in a
    process: a page of such versions read at once queues here rather than profiling every table
    at the same time, and each version is profiled once, whoever asks next finding it stored."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = asyncio.Lock()

    async def rebuilt(self, version: DatasetVersion) -> OpenedProfile:
        platform = self._platform
        vault = platform.service(VAULT)
        async with self._lock:
            key = await vault.data_key(version.project_id)
            async with platform.metadata.acquire() as connection:
                row = await connection.fetchrow(
                    "SELECT sealed_preview, sealed_column_values FROM dataset_versions "
                    "WHERE id = $1",
                    version.id,
                )
            if row is not None and row["sealed_preview"] is not None:
                # Rebuilt meanwhile, by this process or another.
                return OpenedProfile(
                    preview=PREVIEW.open_json(
                        key, version.project_id, version.id, row["sealed_preview"]
                    ),
                    column_values=COLUMN_VALUES.open_json(
                        key, version.project_id, version.id, row["sealed_column_values"]
                    ),
                )
            try:
                with scratch(platform) as work:
                    path = work / "version.parquet"
                    await vault.read_to_file(version.project_id, version.artifact_key, path)
                    opened = await asyncio.to_thread(profile_file, path)
            except ArtifactNotFoundError:
                if version.deleted_at is None:
                    raise
                # Deleted and collected: nothing is left to show.
                return OpenedProfile(preview=[], column_values={})
            async with platform.metadata.acquire() as connection:
                await connection.execute(
                    "UPDATE dataset_versions SET sealed_preview = $2, sealed_column_values = $3 "
                    "WHERE id = $1 AND sealed_preview IS NULL",
                    version.id,
                    PREVIEW.seal_json(key, version.project_id, version.id, opened.preview),
                    COLUMN_VALUES.seal_json(
                        key, version.project_id, version.id, opened.column_values
                    ),
                )
            logger.info("rebuilt the sealed preview of dataset version %s", version.id)
            return opened


PROFILE_REBUILDS: ProcessService[ProfileRebuilds] = ProcessService(
    "dataset-profile-rebuilds", ProfileRebuilds
)
"""This process's rebuilder of pre-0008 versions' profiles: `platform.service(PROFILE_REBUILDS)`."""
