"""The column types aiaas speaks of, and how Arrow types map onto them."""

from __future__ import annotations

import pyarrow as pa

from aiaas.core.errors import InputError

LOGICAL_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}


IMAGE = "image"
"""A binary column of encoded images (PNG, JPEG): the contract of docs/guides/images.md. Not in
`LOGICAL_TYPES`: no cast makes one, so no text becomes an image unchecked."""


def logical_type(arrow_type: pa.DataType) -> str:
    """The aiaas name of an Arrow type; every Arrow type maps onto one."""
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    # Binary data is never text: a binary column holds encoded images (checked at ingest,
    # `image_columns.checked_images`), and is profiled and previewed as such.
    return (
        IMAGE
        if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
        else "string"
    )


def arrow_type(name: str) -> pa.DataType:
    try:
        return LOGICAL_TYPES[name]
    except KeyError:
        known = ", ".join(LOGICAL_TYPES)
        raise InputError(
            f"unknown column type {name!r}", field_errors={"dtype": f"one of {known}"}
        ) from None


def is_numeric(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type))
