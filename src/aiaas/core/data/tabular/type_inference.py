"""Working out a CSV column's type from all its values, text block by text block.

A column is the narrowest of integer, float, boolean, timestamp (naive, then UTC) and string that
every one of its values fits. Numbers are checked with the parser the CSV reader uses, so that a
column typed here always casts; a number with a leading zero ("007", a zip code) stays text.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# The candidates, from the narrowest type to text. A block is first screened on a few values, so
# that a column of words drops its numeric candidates without a full failed cast (slow: arrow
# formats an error for it); the full check runs only for a candidate the screen let through.

_CANDIDATES: list[pa.DataType] = [
    pa.int64(),
    pa.float64(),
    pa.bool_(),
    pa.timestamp("us"),
    pa.timestamp("us", tz="UTC"),
    pa.string(),
]
_SCREEN_VALUES = 64
_BOOLEAN_WORDS = pa.array(["true", "false", "True", "False", "TRUE", "FALSE"])


def _has_leading_zero(values: pa.Array) -> bool:
    # "007" or a zip code "02134" would lose its leading zero as a number: such values are text.
    # Only values starting with "0" or "-0" can have one: the regex runs on those alone.
    suspect = pc.or_(pc.starts_with(values, "0"), pc.starts_with(values, "-0"))
    if not pc.any(suspect).as_py():
        return False
    return bool(pc.any(pc.match_substring_regex(values.filter(suspect), r"^-?0\d")).as_py())


def _casts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _all_fit(values: pa.Array, target: pa.DataType) -> bool:
    if pa.types.is_string(target):
        return True
    if pa.types.is_boolean(target):
        return bool(pc.all(pc.is_in(values, value_set=_BOOLEAN_WORDS)).as_py())
    if pa.types.is_timestamp(target):
        return _casts(values, target)
    # Numbers: the cast is the check (digits, signs, overflow), with the same parser the CSV
    # reader uses; a plus sign is refused, as that reader does.
    if pc.any(pc.starts_with(values, "+")).as_py() or not _casts(values, target):
        return False
    return not _has_leading_zero(values)


def _fits(values: pa.Array, target: pa.DataType) -> bool:
    return _all_fit(values.slice(0, _SCREEN_VALUES), target) and _all_fit(values, target)


class TypeInference:
    """The narrowest type each column's every value fits, narrowed block by block."""

    def __init__(self, names: list[str]) -> None:
        self.choice = dict.fromkeys(names, 0)

    def update(self, batch: pa.RecordBatch) -> None:
        for name in batch.schema.names:
            values = pc.drop_null(batch.column(name))
            if len(values) == 0:
                continue
            while not _fits(values, _CANDIDATES[self.choice[name]]):
                self.choice[name] += 1

    def types(self) -> dict[str, pa.DataType]:
        return {name: _CANDIDATES[index] for name, index in self.choice.items()}
