"""The validator protocol: what a quality check plugin implements, and what it reports.

A dataset declares expectations, each a JSON object with a `kind` (`not_null`, `range`, ...), its
arguments, and `blocking` (true unless said otherwise). Every kind is checked by the validator
that claims it (`aiaas_validators`). A validator first vets an expectation's arguments against
the dataset's columns, when the expectation is set, then checks a version's table, in a worker.

Each check counts the rows that fail it. A dimension's score is the mean over its checks of the
share of rows that pass, in [0, 1]; a dimension with no check scores 1. The quality score is
`Q = Q_consistency + Q_completeness + Q_accuracy`, in [0, 3].
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from aiaas.core.arguments import KindShape

Dimension = Literal["consistency", "completeness", "accuracy"]
DIMENSIONS: tuple[Dimension, ...] = ("consistency", "completeness", "accuracy")
MAX_EXAMPLES = 5

Expectation = Mapping[str, Any]


@dataclass(frozen=True)
class CheckResult:
    name: str
    """Says what was checked, e.g. `not_null(age)`."""
    kind: str
    dimension: Dimension
    passed: bool
    failing_rows: int
    blocking: bool
    message: str
    examples: list[Any] = field(default_factory=list)
    """Up to `MAX_EXAMPLES` failing values or rows, as JSON can hold them."""

    def score(self, row_count: int) -> float:
        if row_count == 0:
            return 1.0 if self.passed else 0.0
        return max(0.0, 1.0 - self.failing_rows / row_count)


class Validator(abc.ABC):
    """Checks tables against the expectation kinds it claims."""

    def subjects(self) -> frozenset[str]:
        """What it validates: `dataset-version` (the default), `model-version`, or both."""
        return frozenset({"dataset-version"})

    @abc.abstractmethod
    def expectation_kinds(self) -> frozenset[str]:
        """The expectation kinds this validator checks."""

    def kind_shapes(self) -> Sequence[KindShape]:
        """The arguments of each kind it claims (`aiaas.core.arguments`). A kind with a shape has
        the keys it does not take refused, with the known ones listed, before `problems` runs,
        and is documented by `aiaas export-reference`. None by default: `problems` alone vets."""
        return ()

    @abc.abstractmethod
    def problems(self, expectation: Expectation, columns: Mapping[str, str]) -> list[str]:
        """What is wrong with an expectation's arguments, given the columns (name → type) of
        the dataset; an empty list when it can be checked. Called when expectations are set.
        A problem of one argument may be an `ArgumentProblem`, which the error names by the
        argument's path (`expectations.2.pattern`) rather than the expectation's."""

    @abc.abstractmethod
    def validate(self, table: pa.Table, expectations: Sequence[Expectation]) -> list[CheckResult]:
        """One result per expectation given (all of kinds this validator claims). Runs in a
        worker thread, off the event loop."""

    def baseline_checks(self, table: pa.Table) -> list[CheckResult]:
        """Checks that run whatever the dataset declares, so that an undeclared dataset still
        gets a meaningful score; none by default."""
        return []


@dataclass(frozen=True)
class QualityScores:
    consistency: float
    completeness: float
    accuracy: float

    @property
    def q(self) -> float:
        return self.consistency + self.completeness + self.accuracy


def quality_scores(results: Sequence[CheckResult], row_count: int) -> QualityScores:
    scores: dict[str, float] = {}
    for dimension in DIMENSIONS:
        checks = [result for result in results if result.dimension == dimension]
        scores[dimension] = (
            sum(check.score(row_count) for check in checks) / len(checks) if checks else 1.0
        )
    return QualityScores(**scores)
