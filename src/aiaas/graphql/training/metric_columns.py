"""A metric's history as four columns, for reading many points at once.

`TrainingJob.metrics` answers one object per point, and graphql-core completes each of their
four fields on its own: reading 10,000 points that way costs about ten times what the same
numbers cost as a few arrays. Here each column is one leaf value, a JSON array serialized in
one piece, so a client that reads a whole history (the SDK, a notebook, a comparison with
another tracker) pays for the numbers and not for the execution around each one.
"""

from __future__ import annotations

import strawberry

from aiaas.core.serialization import finite_or_none
from aiaas.core.training import metric_history
from aiaas.graphql.scalars import FloatColumn, StepColumn


@strawberry.type(
    description="A metric's history as columns: the i-th entry of each is the i-th point "
    "(a bucket's first step, mean, minimum and maximum once downsampled)."
)
class MetricColumns:
    """Each column is built only when selected: a reader of steps and values alone does not
    pay for the other two."""

    points: strawberry.Private[list[metric_history.MetricPoint]]

    @strawberry.field
    def steps(self) -> StepColumn:
        return StepColumn([point.step for point in self.points])

    @strawberry.field
    def values(self) -> FloatColumn:
        return FloatColumn([finite_or_none(point.value) for point in self.points])

    @strawberry.field
    def min(self) -> FloatColumn:
        return FloatColumn([finite_or_none(point.min) for point in self.points])

    @strawberry.field
    def max(self) -> FloatColumn:
        return FloatColumn([finite_or_none(point.max) for point in self.points])
