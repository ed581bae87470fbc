"""Which job states are final, as every job object of the SDK reads them."""

from __future__ import annotations

from aiaas.client.generated.schema_types import JobState

FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
"""A job in one of these states changes no more."""
