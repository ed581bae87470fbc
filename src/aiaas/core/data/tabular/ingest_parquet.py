"""Reading an uploaded Parquet file into normalized Parquet: its footer checked against the
limits before any page is decoded, each batch's text cells and images checked as they come.

A binary column is an image column (`types.IMAGE`): every value must be a whole PNG or JPEG
within the pixel limit (`image_columns.checked_images`), so that a team can upload the image
contract's table (docs/guides/images.md) directly, and no bytes are ever taken for text.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aiaas.core.data.tabular.image_columns import checked_images, is_image_type
from aiaas.core.data.tabular.limits import (
    TableLimits,
    check_names,
    check_parquet_footer,
    checked_cells,
)
from aiaas.core.data.tabular.normalized import NormalizedTable, write_normalized
from aiaas.core.data.tabular.read_options import refuse
from aiaas.core.data.tabular.types import LOGICAL_TYPES


def _normalized_schema(schema: pa.Schema) -> pa.Schema:
    """The schema a Parquet upload is stored with: each column as one of the logical types
    (`types.LOGICAL_TYPES`) or a plain variant of it; `InputError` for a column none holds."""
    fields = []
    for field in schema:
        arrow_type = field.type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if pa.types.is_large_string(arrow_type) or pa.types.is_null(arrow_type):
            arrow_type = pa.string()
        elif is_image_type(arrow_type) or pa.types.is_fixed_size_binary(arrow_type):
            arrow_type = pa.binary()  # encoded images, each checked (`checked_images`)
        elif pa.types.is_decimal(arrow_type) or pa.types.is_float16(arrow_type):
            arrow_type = pa.float64()
        if not _plain(arrow_type):
            raise refuse(
                f"column {field.name!r} is of type {field.type}, which datasets do not hold: "
                f"columns are {', '.join(LOGICAL_TYPES)} or image (binary)"
            )
        fields.append(pa.field(field.name, arrow_type))
    return pa.schema(fields)


def _plain(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_timestamp(arrow_type)
        or pa.types.is_date(arrow_type)
        or pa.types.is_binary(arrow_type)
    )


def normalize_parquet(path: Path, destination: Path, limits: TableLimits) -> NormalizedTable:
    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise refuse(f"the file is not valid Parquet: {exc}") from None
    check_parquet_footer(source.metadata, limits)
    names = source.schema_arrow.names
    check_names(names, limits)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise refuse(f"duplicate column names: {', '.join(duplicates)}")
    if source.metadata.num_rows == 0:
        raise refuse("the file holds no rows")
    schema = _normalized_schema(source.schema_arrow)
    try:
        return write_normalized(
            checked_images(checked_cells(source.iter_batches(), limits)),
            schema,
            destination,
            "parquet",
        )
    except MemoryError:
        raise  # Arrow's is an ArrowException too; the ingest process answers it as such
    except (pa.ArrowException, OSError) as exc:
        # A page that contradicts the footer (a count or a size that is not there) shows only
        # once it is decoded.
        raise refuse(f"the file is not valid Parquet: {exc}") from None
