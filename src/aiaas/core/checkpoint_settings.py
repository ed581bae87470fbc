"""The settings of training checkpoints in the artifact store, a base of `Config`
(docs/configuration.md).

They live apart from config.py to keep that module readable; `Config` inherits them, so they are
plain top-level keys (`checkpoint_retention_s`, `AIAAS_CHECKPOINT_RETENTION_S`) like every other
setting.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

WEEK_S = 7 * 24 * 3600


class CheckpointSettings(BaseModel):
    """How long the stored checkpoints of a job that did not succeed are kept."""

    checkpoint_retention_s: int = Field(
        WEEK_S,
        ge=0,
        description="A failed or cancelled training job's checkpoints stay in the artifact "
        "store this long after it ended, then the hourly garbage collection removes them. A "
        "job that succeeds removes its checkpoints at once.",
    )
