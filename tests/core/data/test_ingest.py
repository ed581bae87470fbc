"""Reading uploads into normalized Parquet: the format comes from the bytes, CSV dialect and
header are detected (or declared), column types are inferred from every value, each column is
profiled, and any malformed file is refused with an `InputError` naming what is wrong.

These are unit tests of `aiaas.core.data.tabular.ingest`: no database, no platform. The same rules
through the APIs are in tests/graphql/test_datasets_api.py and tests/rest/test_dataset_upload.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiaas.core.data.tabular import ingest
from aiaas.core.data.tabular.ingest import SNIFF_BYTES, normalize_upload
from aiaas.core.data.tabular.normalized import PREVIEW_ROWS, NormalizedTable
from aiaas.core.data.tabular.read_options import ReadOptions
from aiaas.core.errors import InputError
from upload_files import parquet_bytes


def normalize(directory: Path, content: bytes, **options: Any) -> NormalizedTable:
    """Run `normalize_upload` on `content` as an uploaded file, in a fresh work directory."""
    source = directory / "upload"
    source.write_bytes(content)
    work = directory / "work"
    work.mkdir(exist_ok=True)
    return normalize_upload(source, work, ReadOptions(**options))


def refusal(directory: Path, content: bytes, **options: Any) -> InputError:
    with pytest.raises(InputError) as caught:
        normalize(directory, content, **options)
    return caught.value


def types_of(table: NormalizedTable) -> dict[str, str]:
    return {column["name"]: column["type"] for column in table.columns}


PEOPLE_CSV = (
    b"id,name,score,active,joined,zip\n"
    b"1,Ada,91.5,true,2024-01-02 10:00:00,02134\n"
    b"2,Grace,78.0,false,2024-02-03 11:30:00,10001\n"
    b"3,Linus,,true,2024-03-04 12:45:00,00501\n"
    b"4,Ada,60.5,false,2024-04-05 13:15:00,94105\n"
)


# CSV: types, schema, normalized file -----------------------------------------------------------


def test_a_csv_is_read_with_a_type_for_each_column(tmp_path: Path) -> None:
    table = normalize(tmp_path, PEOPLE_CSV)

    assert table.source_format == "csv"
    assert table.row_count == 4
    assert types_of(table) == {
        "id": "integer",
        "name": "string",
        "score": "float",
        "active": "boolean",
        "joined": "timestamp",
        # Zip codes keep their leading zeros: read as numbers, 02134 would become 2134.
        "zip": "string",
    }


def test_the_normalized_file_is_parquet_holding_the_typed_values(tmp_path: Path) -> None:
    table = normalize(tmp_path, PEOPLE_CSV)

    assert table.path.read_bytes()[:4] == b"PAR1"
    assert table.size_bytes == table.path.stat().st_size
    stored = pq.read_table(table.path)
    assert stored.column_names == ["id", "name", "score", "active", "joined", "zip"]
    assert stored["id"].to_pylist() == [1, 2, 3, 4]
    assert stored["score"].to_pylist() == [91.5, 78.0, None, 60.5]
    assert stored["active"].to_pylist() == [True, False, True, False]
    assert stored["joined"].to_pylist()[0] == datetime(2024, 1, 2, 10, 0)
    assert stored["zip"].to_pylist() == ["02134", "10001", "00501", "94105"]


def test_the_preview_holds_the_first_rows_as_json_records(tmp_path: Path) -> None:
    rows = "".join(f"{n},item-{n}\n" for n in range(PREVIEW_ROWS + 15))
    table = normalize(tmp_path, f"n,label\n{rows}".encode())

    assert table.row_count == PREVIEW_ROWS + 15
    assert len(table.preview) == PREVIEW_ROWS
    assert table.preview[:2] == [{"n": 0, "label": "item-0"}, {"n": 1, "label": "item-1"}]
    first_people = normalize(tmp_path, PEOPLE_CSV).preview[0]
    # Timestamps are ISO strings, so the preview can be stored and sent as JSON.
    assert first_people["joined"] == "2024-01-02T10:00:00"
    json.dumps(first_people)


def test_column_stats_describe_each_column(tmp_path: Path) -> None:
    table = normalize(tmp_path, PEOPLE_CSV)
    stats = table.column_stats

    scores = [91.5, 78.0, 60.5]
    assert stats["score"]["null_fraction"] == pytest.approx(0.25)
    assert stats["score"]["distinct_count"] == 3
    assert stats["score"]["min"] == 60.5
    assert stats["score"]["max"] == 91.5
    assert stats["score"]["mean"] == pytest.approx(statistics.fmean(scores))
    assert stats["score"]["std"] == pytest.approx(statistics.pstdev(scores))
    assert stats["id"]["min"] == 1
    assert stats["id"]["max"] == 4
    assert stats["id"]["null_fraction"] == 0.0
    assert stats["name"]["distinct_count"] == 3
    assert stats["name"]["top_values"][0] == {"value": "Ada", "count": 2}
    assert {"min", "max", "mean", "std"}.isdisjoint(stats["name"])
    assert stats["active"]["top_values"] == [
        {"value": False, "count": 2},
        {"value": True, "count": 2},
    ]
    json.dumps(stats)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=repr)
def test_the_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    lines = [
        ["city", "population", "area"],
        ["Paris", "2102650", "105.4"],
        ["Lyon", "522250", "47.9"],
    ]
    content = "\n".join(delimiter.join(line) for line in lines) + "\n"

    table = normalize(tmp_path, content.encode())

    assert types_of(table) == {"city": "string", "population": "integer", "area": "float"}
    assert table.row_count == 2


def test_a_declared_delimiter_wins_over_detection(tmp_path: Path) -> None:
    # Split on ';' this file has two columns; on ',' (what detection might pick) it has three.
    table = normalize(tmp_path, b"a;b\n1,5;2\n3,5;4\n", delimiter=";")

    assert [column["name"] for column in table.columns] == ["a", "b"]
    assert table.preview[0] == {"a": "1,5", "b": 2}


def test_a_delimiter_of_more_than_one_character_is_refused(tmp_path: Path) -> None:
    problem = refusal(tmp_path, b"a,b\n1,2\n", delimiter=";;")

    assert "delimiter" in problem.field_errors


def test_a_file_without_a_header_gets_generated_column_names(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"1,2.5,x\n3,4.5,y\n")

    assert types_of(table) == {"column_1": "integer", "column_2": "float", "column_3": "string"}
    assert table.row_count == 2


def test_a_declared_header_wins_over_detection(tmp_path: Path) -> None:
    as_data = normalize(tmp_path, b"alpha,beta\n1,2\n", header=False)
    as_header = normalize(tmp_path, b"10,20\n1,2\n", header=True)

    assert as_data.row_count == 2
    assert as_data.columns == [
        {"name": "column_1", "type": "string"},
        {"name": "column_2", "type": "string"},
    ]
    assert as_header.row_count == 1
    assert [column["name"] for column in as_header.columns] == ["10", "20"]


def test_the_header_of_a_file_with_only_text_columns_is_detected(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"name,city\nAlice,Paris\nBob,London\nCharlotte,Rome\n")

    assert [column["name"] for column in table.columns] == ["name", "city"]
    assert table.row_count == 3


def test_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"\na,b\n1,2\n3,4\n")

    assert table.row_count == 2
    assert types_of(table) == {"a": "integer", "b": "integer"}


def test_a_header_field_with_a_quoted_line_break_is_one_row(tmp_path: Path) -> None:
    table = normalize(tmp_path, b'"first\nname",age\nAda,36\n', header=True)

    assert [column["name"] for column in table.columns] == ["first\nname", "age"]
    assert table.row_count == 1
    assert table.preview == [{"first\nname": "Ada", "age": 36}]


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\u2028"], ids=repr)
def test_a_header_field_may_hold_characters_that_are_not_line_breaks_in_csv(
    tmp_path: Path, separator: str
) -> None:
    content = f"id,note{separator}text,score\n1,a,2.5\n".encode()

    table = normalize(tmp_path, content, header=True)

    assert [column["name"] for column in table.columns] == ["id", f"note{separator}text", "score"]
    assert table.row_count == 1


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"\xef\xbb\xbfid,label\n1,a\n")

    assert [column["name"] for column in table.columns] == ["id", "label"]


def test_quoted_fields_may_hold_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    content = b'id,note\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n'

    table = normalize(tmp_path, content)

    assert table.row_count == 3
    assert pq.read_table(table.path)["note"].to_pylist() == ["a, b", 'say "hi"', "two\nlines"]


def test_common_null_markers_are_read_as_nulls(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"n,label\n1,x\nNA,\nnull,N/A\n4,y\n")

    stored = pq.read_table(table.path)
    assert stored["n"].to_pylist() == [1, None, None, 4]
    assert stored["label"].to_pylist() == ["x", None, None, "y"]
    assert table.column_stats["n"]["null_fraction"] == 0.5


def test_crlf_and_blank_lines_between_rows_are_fine(tmp_path: Path) -> None:
    table = normalize(tmp_path, b"a,b\r\n1,2\r\n\r\n3,4\r\n")

    assert table.row_count == 2
    assert types_of(table) == {"a": "integer", "b": "integer"}


def test_a_type_is_inferred_from_every_value_not_just_the_first_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small blocks so that a few kilobytes span many of them: the value that makes `code` text
    # comes blocks after many integers; a type guessed from the first block would fail on it.
    monkeypatch.setattr(ingest, "BLOCK_BYTES", 1024)
    rows = "".join(f"{n},{n * 2}\n" for n in range(2000))

    table = normalize(tmp_path, f"code,value\n{rows}A17,1\n".encode())

    assert types_of(table) == {"code": "string", "value": "integer"}
    assert table.row_count == 2001
    assert pq.read_table(table.path)["code"].to_pylist()[-1] == "A17"


def test_a_column_of_non_ascii_digits_is_read_as_text(tmp_path: Path) -> None:
    table = normalize(tmp_path, "label,n\nx,\u0663\ny,\u0664\n".encode())

    assert types_of(table) == {"label": "string", "n": "string"}


# Encodings ----------------------------------------------------------------------------------

LATIN1_CSV = "name,city,age\nJosé,München,31\nZoë,Zürich,45\n".encode("latin-1")


def test_a_declared_encoding_is_used(tmp_path: Path) -> None:
    table = normalize(tmp_path, LATIN1_CSV, encoding="latin-1")

    assert pq.read_table(table.path)["city"].to_pylist() == ["München", "Zürich"]
    assert table.preview[0] == {"name": "José", "city": "München", "age": 31}


def test_without_a_declared_encoding_the_file_must_be_utf8(tmp_path: Path) -> None:
    problem = refusal(tmp_path, LATIN1_CSV)

    assert "not valid utf-8" in problem.message.lower()
    assert "encoding" in problem.field_errors


def test_an_unknown_encoding_is_refused(tmp_path: Path) -> None:
    problem = refusal(tmp_path, b"a,b\n1,2\n", encoding="klingon-8")

    assert "klingon-8" in problem.message
    assert "encoding" in problem.field_errors


def test_a_character_cut_by_the_sniffed_sample_is_not_an_error(tmp_path: Path) -> None:
    # "é" is two bytes in UTF-8: put its first byte last in the sample that detection reads.
    prefix = b"label,n\n"
    filler = b"x" * (SNIFF_BYTES - len(prefix) - 1)
    content = prefix + filler + "é,1\n".encode()

    table = normalize(tmp_path, content)

    assert table.row_count == 1
    assert pq.read_table(table.path)["label"].to_pylist() == [filler.decode() + "é"]


# Parquet ------------------------------------------------------------------------------------


def test_a_parquet_file_keeps_its_types(tmp_path: Path) -> None:
    source = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "weight": [1.5, None, 3.25],
            "tag": pa.array(["a", "b", "a"]).dictionary_encode(),
            "ok": [True, False, None],
            "at": pa.array([datetime(2024, 1, 1), datetime(2024, 1, 2), None], pa.timestamp("ms")),
            "zip": ["02134", "10001", "00501"],
        }
    )

    table = normalize(tmp_path, parquet_bytes(source))

    assert table.source_format == "parquet"
    assert table.row_count == 3
    assert types_of(table) == {
        "id": "integer",
        "weight": "float",
        "tag": "string",
        "ok": "boolean",
        "at": "timestamp",
        "zip": "string",
    }
    stored = pq.read_table(table.path)
    # Dictionary-encoded strings are stored as plain strings.
    assert stored.schema.field("tag").type == pa.string()
    assert stored["tag"].to_pylist() == ["a", "b", "a"]
    assert table.column_stats["weight"]["null_fraction"] == pytest.approx(1 / 3)
    assert table.column_stats["tag"]["top_values"][0] == {"value": "a", "count": 2}


def test_a_parquet_file_with_a_nul_in_a_column_name_is_refused(tmp_path: Path) -> None:
    # PostgreSQL's text cannot hold a NUL: it would fail as the version is recorded, a 500.
    source = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "y\x00z"])

    problem = refusal(tmp_path, parquet_bytes(source))

    assert "holds a NUL character" in problem.message


def test_a_parquet_file_with_duplicate_column_names_is_refused(tmp_path: Path) -> None:
    source = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])

    problem = refusal(tmp_path, parquet_bytes(source))

    assert "duplicate column names: x" in problem.message


def test_a_parquet_file_without_rows_is_refused(tmp_path: Path) -> None:
    empty = pa.table({"x": pa.array([], pa.int64())})

    problem = refusal(tmp_path, parquet_bytes(empty))

    assert "no rows" in problem.message


def test_a_truncated_parquet_file_is_refused(tmp_path: Path) -> None:
    content = parquet_bytes(pa.table({"x": [1, 2, 3]}))

    problem = refusal(tmp_path, content[: len(content) // 2])

    assert "not valid Parquet" in problem.message
    assert "file" in problem.field_errors


@pytest.mark.parametrize(
    "column",
    [pa.array([[1, 2], [3]]), pa.array([{"a": 1}, {"a": 2}])],
    ids=["list", "struct"],
)
def test_a_parquet_file_with_nested_columns_is_read_or_refused_cleanly(
    tmp_path: Path, column: pa.Array
) -> None:
    content = parquet_bytes(pa.table({"id": [1, 2], "nested": column}))

    # Read, or refused as bad input: either is fine, an unexpected exception is not.
    with contextlib.suppress(InputError):
        normalize(tmp_path, content)


def test_a_decimal_parquet_column_is_read_as_float_with_a_json_profile(tmp_path: Path) -> None:
    column = pa.array([Decimal("1.50"), Decimal("2.25")])

    table = normalize(tmp_path, parquet_bytes(pa.table({"value": column})))

    assert types_of(table) == {"value": "float"}
    assert table.column_stats["value"]["max"] == 2.25
    json.dumps(table.column_stats)
    json.dumps(table.preview)


@pytest.mark.parametrize(
    "column",
    [
        pa.array([1, 2], pa.duration("s")),
        pa.array([b"\x01", b"\x02"], pa.binary()),
        pa.array([[1, 2], [3]]),
    ],
    ids=["duration", "binary", "list"],
)
def test_a_parquet_column_of_a_type_datasets_do_not_hold_is_refused(
    tmp_path: Path, column: pa.Array
) -> None:
    problem = refusal(tmp_path, parquet_bytes(pa.table({"id": [1, 2], "odd": column})))

    assert "column 'odd'" in problem.message
    assert "file" in problem.field_errors


# The format comes from the bytes ------------------------------------------------------------


def test_a_file_declared_csv_that_holds_parquet_is_refused(tmp_path: Path) -> None:
    problem = refusal(tmp_path, parquet_bytes(pa.table({"x": [1]})), format="csv")

    assert "declared csv but its content is parquet" in problem.message


def test_a_file_declared_parquet_that_holds_csv_is_refused(tmp_path: Path) -> None:
    problem = refusal(tmp_path, b"a,b\n1,2\n", format="parquet")

    assert "declared parquet but its content is csv" in problem.message


def test_binary_data_is_neither_csv_nor_parquet(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"

    problem = refusal(tmp_path, png)

    assert "neither CSV nor Parquet" in problem.message
    assert "file" in problem.field_errors


# Malformed CSV --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "complaint", "field"),
    [
        (b"", "empty", "file"),
        (b"\n\n\n", "no rows", "file"),
        (b"a,b,c\n", "header but no rows", "file"),
        (b"a,b,c", "header but no rows", "file"),
        (b"a,b,a\n1,2,3\n", "duplicate column names: a", "file"),
        (b" a ,a\n1,2\n", "duplicate column names: a", "file"),
        (b"a,b\n1,2\n3,4,5\n", "ragged rows", "file"),
        (b"a,b,c\n1,2,3\n4,5\n", "ragged rows", "file"),
        (b"a,b\n1,\xff\n", "not valid utf-8", "encoding"),
    ],
    ids=[
        "empty",
        "blank-lines-only",
        "header-only",
        "header-only-without-newline",
        "duplicate-columns",
        "duplicate-after-trimming",
        "row-too-long",
        "row-too-short",
        "invalid-utf8-early",
    ],
)
def test_malformed_csv_is_refused_with_a_field_error(
    tmp_path: Path, content: bytes, complaint: str, field: str
) -> None:
    problem = refusal(tmp_path, content)

    assert complaint in problem.message.lower()
    assert field in problem.field_errors


def test_invalid_utf8_after_the_sniffed_sample_is_refused(tmp_path: Path) -> None:
    # Detection only decodes the first 64 KiB; the bad byte comes well after it.
    rows = b"".join(b"%d,word\n" % n for n in range(20_000))
    assert len(rows) > 2 * SNIFF_BYTES

    problem = refusal(tmp_path, b"n,label\n" + rows + b"20001,caf\xe9\n")

    assert "not valid utf-8" in problem.message.lower()
    assert "encoding" in problem.field_errors


def test_a_ragged_row_after_the_sniffed_sample_is_refused(tmp_path: Path) -> None:
    rows = b"".join(b"%d,word\n" % n for n in range(20_000))

    problem = refusal(tmp_path, b"n,label\n" + rows + b"1,2,3\n")

    assert "ragged rows" in problem.message


def test_a_nul_byte_after_the_sniffed_sample_is_refused(tmp_path: Path) -> None:
    rows = b"".join(b"%d,word\n" % n for n in range(20_000))

    with pytest.raises(InputError):
        normalize(tmp_path, b"n,label\n" + rows + b"1,wo\x00rd\n")


# Fuzzing: anything CSV-ish is read consistently with Python's csv module, or refused ---------

CSV_PIECES = [
    b",", b",", b'"', b"\n", b"\n", b"\r\n", b"\r", b"a", b"b", b"1", b"0", b"-", b".", b"2.5",
    b" ", b"x y", b"true", b"NA", b"2024-01-01", b";", b"\t", b"\xc3\xa9", b"\xff", b"\xc3",
    b"\x00",
]  # fmt: skip


def csv_oracle(content: bytes) -> tuple[bool, list[list[str]]] | None:
    """What Python's csv module reads from `content` with a comma delimiter: whether every row
    has the same number of fields, and the rows (blank lines dropped, as Arrow drops them).
    None when it is not valid UTF-8 or the csv module itself refuses it."""
    try:
        text = content.decode("utf-8")
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except (UnicodeDecodeError, csv.Error):
        return None
    rectangular = len({len(row) for row in rows}) <= 1
    return rectangular, rows


CSV_FIELDS = ["", "a", "b", "1", "07", "-2.5", "true", "NA", " x ", '"q"', '"x,y"', '"l\nm"', "é"]


def spliced(text: bytes, junk: bytes, at: int) -> bytes:
    position = at % (len(text) + 1)
    return text[:position] + junk + text[position:]


# Random pieces find the odd corners; rows of fields make mostly well-formed files, some with a
# stray byte or two spliced in, so that many examples get past the first checks.
random_pieces = st.lists(
    st.one_of(st.sampled_from(CSV_PIECES), st.binary(max_size=3)), max_size=40
).map(b"".join)


def rows_of(width: int) -> st.SearchStrategy[bytes]:
    row = st.lists(st.sampled_from(CSV_FIELDS), min_size=width, max_size=width).map(",".join)
    return st.lists(row, min_size=1, max_size=6).map(lambda rows: "\n".join(rows).encode())


rows_of_fields = st.builds(
    spliced,
    st.integers(1, 3).flatmap(rows_of),
    st.one_of(st.just(b""), st.sampled_from(CSV_PIECES), st.binary(max_size=2)),
    st.integers(0, 200),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(random_pieces, rows_of_fields))
@example(b'a,b\n1,"x\ny"\n')
@example(b"a,b\n1,2\n3\n")
@example(b"a,b\n1,\xff\n")
def test_csv_ish_bytes_are_read_like_pythons_csv_or_refused(content: bytes) -> None:
    oracle = csv_oracle(content)

    with tempfile.TemporaryDirectory() as directory:
        try:
            table = normalize(Path(directory), content, header=True, delimiter=",")
        except InputError:
            return
    # It was read: then it was text, NUL-free, and its rows were what the csv module reads.
    assert oracle is not None, "invalid UTF-8 must be refused"
    assert b"\x00" not in content, "binary data must be refused"
    rectangular, rows = oracle
    assert rectangular, "ragged rows must be refused"
    assert table.row_count == len(rows) - 1
    assert len(table.columns) == len(rows[0])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.lists(
        st.text(alphabet="abcxyz_", min_size=1, max_size=5), min_size=1, max_size=4, unique=True
    ),
    data=st.data(),
)
def test_a_valid_csv_file_is_read_whole(header: list[str], data: st.DataObject) -> None:
    """A well-formed file (written by Python's csv module, quoting where needed) is never refused
    and keeps every row, whatever its values: numbers, text, quotes, commas, newlines."""
    value = st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
        st.text(alphabet='abc ,"\n-.0123', max_size=8),
    )
    rows = data.draw(
        st.lists(st.lists(value, min_size=len(header), max_size=len(header)), min_size=1)
    )
    # A row whose every value is empty is written as a blank line (one column) or a line of
    # commas; both are data rows to the csv module, but a blank line is nothing to Arrow.
    rows = [row for row in rows if any(row)] or [["z"] * len(header)]
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])

    with tempfile.TemporaryDirectory() as directory:
        table = normalize(Path(directory), buffer.getvalue().encode(), header=True)

    assert table.row_count == len(rows)
    assert [column["name"] for column in table.columns] == header
    assert not any(
        isinstance(value, float) and math.isnan(value)
        for record in table.preview
        for value in record.values()
    )
