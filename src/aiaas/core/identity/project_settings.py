"""A project's settings: what its owners decide for every upload to it.

One so far, `keep_dicom_personal_tags` (revision 0012): whether a DICOM file uploaded into an
image dataset keeps its personal tags (`aiaas.core.data.images.dicom.PERSONAL_TAGS`) in its
version's `dicom_tags`. It is false unless set: personal tags are dropped at ingest. Each
change is audited (`project.set_dicom_personal_tags`), and so is every DICOM upload, with
whether its tags were kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from aiaas.core.auth import Principal
from aiaas.core.errors import NotFoundError
from aiaas.core.identity.projects import ChangeInProject
from aiaas.core.storage import Connection

if TYPE_CHECKING:
    from aiaas.core.platform import Platform


async def keeps_dicom_personal_tags(connection: Connection, project_id: UUID) -> bool:
    kept = await connection.fetchval(
        "SELECT keep_dicom_personal_tags FROM projects WHERE id = $1", project_id
    )
    if kept is None:
        raise NotFoundError("no such project")
    return bool(kept)


async def set_keep_dicom_personal_tags(
    platform: Platform,
    actor: Principal,
    project_id: UUID,
    keep: bool,
    *,
    request_id: str | None = None,
) -> bool:
    """Set whether the project's DICOM uploads keep their personal tags; the new value. The
    caller has checked the actor may (`project` `configure`)."""
    async with ChangeInProject(
        platform, actor, "project.set_dicom_personal_tags", request_id, project_id=project_id
    ) as change:
        await change.connection.execute(
            "UPDATE projects SET keep_dicom_personal_tags = $2 WHERE id = $1", project_id, keep
        )
        await change.record(
            object_type="project",
            object_id=str(project_id),
            project_id=project_id,
            details={"keep_dicom_personal_tags": keep},
        )
    return keep
