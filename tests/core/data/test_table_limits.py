"""The limits an upload's table is held to, told from what can be read before decoding (a CSV's
first row, a Parquet file's footer) and measured again once decoded; and Parquet files that lie
about their pages, read in an ingest process under a memory ceiling: each is a typed refusal,
never another exception."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.core.config import Config
from aiaas.core.data.ingest_processes import IngestProcesses
from aiaas.core.data.tabular.ingest import normalize_upload
from aiaas.core.data.tabular.limits import TableLimits
from aiaas.core.data.tabular.read_options import TEXT_ENCODINGS, ReadOptions
from aiaas.core.errors import InputError

MiB = 1 << 20
DETECT = ReadOptions()


def refusal(path: Path, work: Path, limits: TableLimits, options: ReadOptions = DETECT) -> str:
    with pytest.raises(InputError) as refused:
        normalize_upload(path, work, options, limits)
    assert set(refused.value.field_errors) == {"file"}
    return refused.value.message


def write_parquet(path: Path, table: pa.Table, **options: object) -> Path:
    pq.write_table(table, path, **options)  # type: ignore[arg-type]
    return path


def long_text(size: int, fill: bytes = b"a") -> pa.Array:
    """One text value of `size` bytes, made without a Python string of that size."""
    offsets = pa.array([0, size], pa.int32())
    return pa.StringArray.from_buffers(1, offsets.buffers()[1], pa.py_buffer(fill * size))


# Width ----------------------------------------------------------------------------------------


def test_a_csv_wider_than_the_limit_is_refused_from_its_first_row(tmp_path: Path) -> None:
    header = ",".join(f"c{index}" for index in range(11))
    path = tmp_path / "wide.csv"
    path.write_text(f"{header}\n{','.join(['1'] * 11)}\n")

    message = refusal(path, tmp_path, TableLimits(max_columns=10))

    assert "11 columns" in message
    assert "limit of 10" in message


def test_a_csv_of_100k_columns_is_refused_under_the_default_limit(tmp_path: Path) -> None:
    path = tmp_path / "very-wide.csv"
    header = ",".join(f"c{index}" for index in range(100_000))
    path.write_text(f"{header}\n{'1,' * 99_999}1\n")

    assert "100000 columns" in refusal(path, tmp_path, TableLimits())


def test_a_csv_at_the_width_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "at-limit.csv"
    path.write_text(",".join(f"c{index}" for index in range(10)) + "\n" + "1," * 9 + "1\n")

    table = normalize_upload(path, tmp_path, DETECT, TableLimits(max_columns=10))

    assert len(table.columns) == 10


def test_a_parquet_file_wider_than_the_limit_is_refused_from_its_footer(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "wide.parquet", pa.table({f"c{i}": [1] for i in range(11)}))

    assert "11 columns" in refusal(path, tmp_path, TableLimits(max_columns=10))


@pytest.mark.parametrize("source_format", ["csv", "parquet"])
def test_a_column_name_past_the_limit_is_refused(tmp_path: Path, source_format: str) -> None:
    name = "n" * 257
    if source_format == "csv":
        path = tmp_path / "long-name.csv"
        path.write_text(f"id,{name}\n1,2\n")
    else:
        path = write_parquet(tmp_path / "long-name.parquet", pa.table({"id": [1], name: [2]}))

    assert "limit of 256 bytes for a column's name" in refusal(path, tmp_path, TableLimits())


# Rows and sizes from the footer -----------------------------------------------------------


def test_a_parquet_file_with_more_rows_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "tall.parquet", pa.table({"n": list(range(101))}))

    assert "101 rows" in refusal(path, tmp_path, TableLimits(max_rows=100))


def test_a_row_group_past_its_limit_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "group.parquet", pa.table({"n": list(range(100_000))}))

    message = refusal(path, tmp_path, TableLimits(max_row_group_bytes=64 * 1024))

    assert "row group 0" in message
    assert "smaller row groups" in message


def test_a_parquet_table_past_the_uncompressed_limit_is_refused(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "big.parquet", pa.table({"n": list(range(100_000))}))

    assert "decodes to" in refusal(path, tmp_path, TableLimits(max_uncompressed_bytes=64 * 1024))


def test_a_2_kb_file_holding_a_64_mib_string_is_refused_from_its_footer(tmp_path: Path) -> None:
    table = pa.table({"text": long_text(64 * MiB)})
    path = write_parquet(tmp_path / "bomb.parquet", table, compression="zstd")
    assert path.stat().st_size < 64 * 1024  # it compresses to next to nothing

    message = refusal(path, tmp_path, TableLimits())

    assert "'text'" in message
    assert f"limit of {MiB} bytes" in message


# Cells, measured once decoded ---------------------------------------------------------------


def test_one_long_value_among_short_ones_is_caught_once_decoded(tmp_path: Path) -> None:
    # The chunk's average is far below the limit, so only the decoded batch shows the value.
    values = pa.concat_arrays([pa.array(["a"] * 5_000), long_text(2 * MiB, b"0")])
    path = write_parquet(tmp_path / "one-long.parquet", pa.table({"text": values}))

    assert "'text'" in refusal(path, tmp_path, TableLimits())


def test_a_csv_cell_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long-cell.csv"
    path.write_bytes(b"id,text\n1,short\n2," + b"x" * (2 * MiB) + b"\n")

    assert "'text'" in refusal(path, tmp_path, TableLimits())


def test_a_cell_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "at-limit.csv"
    path.write_bytes(b"id,text\n1," + b"x" * 1000 + b"\n")

    table = normalize_upload(path, tmp_path, DETECT, TableLimits(max_cell_bytes=1000))

    assert table.row_count == 1


# Any bytes, in any encoding an upload may declare -------------------------------------------

CSV_LIKE = st.lists(
    st.lists(st.text(max_size=6), min_size=1, max_size=4).map(",".join), min_size=1, max_size=5
).map("\n".join)


@st.composite
def declared_files(draw: st.DrawFn) -> tuple[bytes, ReadOptions]:
    encoding = draw(st.none() | st.sampled_from(sorted(TEXT_ENCODINGS)))
    text = draw(CSV_LIKE)
    if draw(st.booleans()):
        content = draw(st.binary(max_size=64))
    else:
        content = text.encode(
            draw(st.sampled_from([encoding or "utf-8", "utf-8", "utf-16"])), "replace"
        )
        if draw(st.booleans()):
            content = content[: draw(st.integers(0, len(content)))]
    header = draw(st.none() | st.booleans())
    return content, ReadOptions(encoding=encoding, header=header)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declared=declared_files())
def test_any_bytes_in_any_declared_encoding_are_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory, declared: tuple[bytes, ReadOptions]
) -> None:
    content, options = declared
    work = tmp_path_factory.mktemp("declared")
    source = work / "upload"
    source.write_bytes(content)

    try:
        table = normalize_upload(source, work, options, TableLimits())
    except InputError as refused:
        field_errors = refused.field_errors
        assert set(field_errors) <= {"file", "encoding"}
    else:
        assert table.row_count > 0


# Lying files, read under a memory ceiling ---------------------------------------------------


@pytest.fixture(scope="module")
async def processes(config: Config) -> AsyncIterator[IngestProcesses]:
    small = config.model_copy(update={"ingest_memory_limit_bytes": 1 << 30, "ingest_processes": 1})
    processes = IngestProcesses(small)
    yield processes
    await processes.close()


def valid_parquet() -> bytes:
    table = pa.table(
        {
            "id": list(range(200)),
            "score": [index / 7 for index in range(200)],
            "label": [f"label-{index % 13}" for index in range(200)],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=64)
    return sink.getvalue()


VALID_PARQUET = valid_parquet()
HUGE_VARINTS = [b"\xfe\xff\xff\xff\x0f", b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x08"]


@st.composite
def lying_parquet(draw: st.DrawFn) -> bytes:
    """A valid file with bytes changed: overwritten with values a Thrift header would read as
    2^31-1 or negative, or flipped at random, anywhere between the magic numbers."""
    content = bytearray(VALID_PARQUET)
    for _ in range(draw(st.integers(1, 4))):
        offset = draw(st.integers(4, len(content) - 9))
        if draw(st.booleans()):
            patch = draw(st.sampled_from(HUGE_VARINTS))
        else:
            patch = draw(st.binary(min_size=1, max_size=4))
        content[offset : offset + len(patch)] = patch
    return bytes(content)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=lying_parquet())
async def test_a_parquet_file_that_lies_is_read_or_refused_never_a_crash(
    processes: IngestProcesses, tmp_path: Path, content: bytes
) -> None:
    source = tmp_path / "lying.parquet"
    source.write_bytes(content)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)

    try:
        table = await processes.normalize(source, work, DETECT)
    except InputError as refused:
        field_errors = refused.field_errors
        assert field_errors
    else:
        assert table.row_count >= 0


async def test_a_file_past_the_memory_ceiling_is_refused_and_the_next_one_is_read(
    config: Config, tmp_path: Path
) -> None:
    # The footer checks are lifted so that only the ceiling stands between this file and the
    # memory it needs: one 400 MiB value, decompressed and decoded, in 1 GiB of address space
    # of which Python and Arrow take about 450 MiB.
    lifted = config.model_copy(
        update={
            "ingest_memory_limit_bytes": 1 << 30,
            "dataset_max_cell_bytes": 1 << 30,
            "ingest_processes": 1,
        }
    )
    processes = IngestProcesses(lifted)
    processes.limits = TableLimits(max_cell_bytes=1 << 30, max_row_group_bytes=1 << 30)
    source = write_parquet(
        tmp_path / "heavy.parquet", pa.table({"text": long_text(400 * MiB)}), compression="zstd"
    )
    small = tmp_path / "small.csv"
    small.write_text("id,name\n1,a\n2,b\n")
    try:
        with pytest.raises(InputError) as refused:
            await processes.normalize(source, tmp_path, DETECT)
        table = await processes.normalize(small, tmp_path, DETECT)
    finally:
        await processes.close()

    assert "more memory than an upload may use (1024 MiB)" in refused.value.message
    assert table.row_count == 2


async def test_an_ingest_process_gets_no_secret_of_the_platform(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It parses hostile files: what it could leak, it must not hold.
    monkeypatch.setenv("AIAAS_MASTER_KEY", "a-secret-the-child-must-not-see")
    processes = IngestProcesses(config.model_copy(update={"ingest_processes": 1}))
    small = tmp_path / "small.csv"
    small.write_text("id,name\n1,a\n")
    try:
        await processes.normalize(small, tmp_path, DETECT)
        [child] = processes._idle
        environment = Path(f"/proc/{child.process.pid}/environ").read_bytes()  # noqa: ASYNC240
    finally:
        await processes.close()

    assert b"AIAAS_" not in environment
    assert b"a-secret-the-child-must-not-see" not in environment


async def test_a_parquet_text_column_that_is_not_utf8_is_refused_naming_it(
    processes: IngestProcesses, tmp_path: Path
) -> None:
    # Arrow builds, and Parquet stores, a text column's bytes without checking them.
    offsets = pa.py_buffer(np.array([0, 2, 3], dtype=np.int32).tobytes())
    names = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xff")])
    source = tmp_path / "not-utf8.parquet"
    pq.write_table(pa.table({"name": names, "amount": [1.0, 2.0]}), source)
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(InputError, match="column 'name' holds text that is not UTF-8"):
        await processes.normalize(source, work, DETECT)
