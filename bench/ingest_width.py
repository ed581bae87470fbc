"""Ingest time per column as files grow wider: 2-row CSV files of 500 to 8,000 columns.

Each file goes through `normalize_upload`, the whole ingest an upload runs (format detection,
reading, type inference, profiling, writing normalized Parquet), in this process: HTTP, the
vault and the database add a constant per upload, not per column. The aim is a time per column
that stays flat, within 2x from the narrowest file to the widest.

The baseline, measured in the same run on the same written files, is the distinct-value count
that ingest used to run: a reader opened per column, each parsing the file's footer, which grows
with the width. Its cost per column grows with the width; that is what made ingest quadratic.

    python bench/ingest_width.py [--widths 500,1000,2000,4000,8000] [--baseline-width 2000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from aiaas.core.data.tabular.ingest import normalize_upload
from aiaas.core.data.tabular.read_options import ReadOptions


def two_row_csv(path: Path, width: int) -> None:
    header = ",".join(f"c{index}" for index in range(width))
    rows = [",".join(str((row * 7 + index) % 97) for index in range(width)) for row in range(2)]
    path.write_text("\n".join([header, *rows]) + "\n")


def ingest_seconds(width: int, directory: Path) -> tuple[float, Path]:
    source = directory / f"w{width}.csv"
    two_row_csv(source, width)
    work = directory / f"w{width}"
    work.mkdir()
    started = time.perf_counter()
    table = normalize_upload(source, work, ReadOptions())
    return time.perf_counter() - started, table.path


def reader_per_column_seconds(parquet: Path) -> float:
    """The old distinct count's reads: one `read_table` per column."""
    names = pq.read_schema(parquet).names
    started = time.perf_counter()
    for name in names:
        pq.read_table(parquet, columns=[name])
    return time.perf_counter() - started


def one_reader_seconds(parquet: Path) -> float:
    """Today's reads of the same columns: one reader, the columns in as few reads as fit."""
    started = time.perf_counter()
    reader = pq.ParquetFile(parquet)
    reader.read(columns=reader.schema_arrow.names)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--widths", default="500,1000,2000,4000,8000")
    parser.add_argument("--baseline-width", type=int, default=2000)
    args = parser.parse_args()
    widths = [int(width) for width in args.widths.split(",")]
    result: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        written: dict[int, Path] = {}
        for width in widths:
            seconds, written[width] = ingest_seconds(width, directory)
            result[f"ingest_{width}_columns_s"] = round(seconds, 3)
            result[f"ingest_{width}_columns_per_column_ms"] = round(seconds / width * 1000, 3)
            print(f"{width} columns: {seconds:.2f} s, {seconds / width * 1000:.3f} ms per column")
        per_column = [result[f"ingest_{width}_columns_per_column_ms"] for width in widths]
        result["widest_vs_narrowest_per_column_ratio"] = round(per_column[-1] / per_column[0], 2)
        baseline = written.get(args.baseline_width) or written[widths[-1]]
        old = reader_per_column_seconds(baseline)
        new = one_reader_seconds(baseline)
        result["baseline_width_columns"] = len(pq.read_schema(baseline).names)
        result["reader_per_column_reads_s"] = round(old, 3)
        result["one_reader_reads_s"] = round(new, 3)
        result["one_reader_vs_reader_per_column_ratio"] = round(old / new, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
