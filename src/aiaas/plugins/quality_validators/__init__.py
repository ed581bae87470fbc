"""The built-in data quality validators: schema, completeness, consistency and accuracy.

    schema        column_type
    completeness  not_null, row_count; and always: the rows with an empty cell (never blocking)
    consistency   unique, no_duplicate_rows, rule; and always: the share of repeated rows (never
                  blocking)
    accuracy      range, allowed_values, regex

Each module declares the arguments of its kinds (`SHAPES`), from which `docs/reference.md` is
generated (`aiaas export-reference`), with an example of each. Every expectation may say
`"blocking": false`; it is blocking otherwise. Schema checks count in the consistency score.

One module per validator, named after what it checks; `results` holds what they share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.specs import ValidatorSpec
from aiaas.core.validation import Validator
from aiaas.plugins.quality_validators.accuracy import AccuracyValidator
from aiaas.plugins.quality_validators.completeness import CompletenessValidator
from aiaas.plugins.quality_validators.consistency import ConsistencyValidator
from aiaas.plugins.quality_validators.schema import SchemaValidator

__all__ = [
    "BUILT_IN",
    "AccuracyValidator",
    "CompletenessValidator",
    "ConsistencyValidator",
    "SchemaValidator",
    "aiaas_validators",
]

BUILT_IN: tuple[tuple[str, type[Validator], str], ...] = (
    ("schema", SchemaValidator, "Column types."),
    ("completeness", CompletenessValidator, "Missing values and row counts."),
    ("consistency", ConsistencyValidator, "Duplicates, unique keys and cross-column rules."),
    ("accuracy", AccuracyValidator, "Ranges, allowed values and patterns."),
)


def _factory(validator: type[Validator]) -> Any:
    def build(config: Config) -> Validator:
        del config  # nothing to configure
        return validator()

    return build


@hookimpl
def aiaas_validators() -> Iterable[ValidatorSpec]:
    return [
        ValidatorSpec(name=name, factory=_factory(validator), description=description)
        for name, validator, description in BUILT_IN
    ]
