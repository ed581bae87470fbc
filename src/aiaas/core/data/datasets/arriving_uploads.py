"""Reading an upload while its body still arrives, so that parsing overlaps receiving.

The receiver starts the reading as it starts writing the file, and marks the file complete once
the last byte is written (`tabular.arriving`); `upload_version` then takes the table from the
reading rather than starting one. Nothing is stored, and nothing audited, by the reading itself:
the upload's audited change still decides (a refusal of the file is raised and recorded there,
as it would be for a file read once received), and a body that never completes (cut off, past
the limit) gets its reading stopped, its ingest process killed with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.data.ingest_processes import INGEST_PROCESSES, IngestProcesses
from aiaas.core.data.tabular.normalized import NormalizedTable
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.identity.project_settings import keeps_dicom_personal_tags

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


def start_reading(
    platform: Platform, project_id: UUID, source: Path, options: ReadOptions
) -> asyncio.Task[NormalizedTable] | None:
    """Start reading `source` (created already, still being written) into
    `source.parent/normalized.parquet`. None when every ingest process is busy: the upload is
    then read once received, as before, rather than hold a process while its body arrives."""
    processes = platform.service(INGEST_PROCESSES)
    if not processes.has_idle_slot():
        return None
    return asyncio.create_task(_read(platform, processes, project_id, source, options))


async def _read(
    platform: Platform,
    processes: IngestProcesses,
    project_id: UUID,
    source: Path,
    options: ReadOptions,
) -> NormalizedTable:
    async with platform.metadata.acquire() as connection:
        # The project's, never the uploader's, as `upload_version` decides it.
        keeps_tags = await keeps_dicom_personal_tags(connection, project_id)
    options = dataclasses.replace(options, keep_dicom_personal_tags=keeps_tags)
    return await processes.normalize(source, source.parent, options, arriving=True)


async def stop_reading(reading: asyncio.Task[NormalizedTable]) -> None:
    """Stop a reading not awaited to its end (a refused, cut off or deduplicated upload) and
    wait until its ingest process is gone, before the scratch directory goes."""
    reading.cancel()
    await asyncio.wait([reading])
    if not reading.cancelled():
        reading.exception()  # told already, where it mattered: by `upload_version`
