"""The scoring thread of a batch prediction job, on a real trained model: parts hold the
predictions alone, and a run that resumes from finished parts, whatever their boundaries and
whether they hold the predictions alone or whole rows (as parts once did), writes the same output
file as one run."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiaas.core.data.tabular.normalized import NormalizedTable, write_normalized
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batch_scoring import (
    Parts,
    Progress,
    ScoringRun,
    Stopped,
    output_columns,
    score_file,
)
from aiaas.core.signatures import ModelSignature
from aiaas.core.trainers import SilentReporter, TrainingRun
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer
from aiaas.plugins.flax_trainers import TabularClassifier
from aiaas.plugins.jax_serving import JaxServingRuntime
from serving_support import assert_same_stats

ROWS = 53
"""Rows of the scored table: a prime, so that no batch size divides it."""


def scored_table(rows: int) -> pa.Table:
    draw = np.random.default_rng(7)
    amount = draw.normal(size=rows)
    return pa.table(
        {
            "amount": pa.array(amount),
            "count": pa.array(draw.integers(0, 5, rows)),
            "label": pa.array(np.where(amount > 0, "yes", "no").tolist()),
        }
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, ModelSignature]:
    run = TrainingRun(
        table=scored_table(200),
        target="label",
        features=("amount", "count"),
        hyperparameters={"epochs": 1, "hidden_size": 8, "hidden_layers": 1, "batch_size": 64},
        validation_fraction=0.2,
        seed=0,
        checkpoint_dir=tmp_path_factory.mktemp("checkpoints"),
        checkpoint_every_steps=1_000_000,
    )
    trained = TabularClassifier().fit(run, SilentReporter())
    # One row per call: a row's prediction may differ in its last bit with the shape of the
    # call it is in, and the runs compared here cut their calls differently.
    return JaxServingRuntime().load(trained.bundle, max_batch_size=1), trained.signature


@pytest.fixture
def source(tmp_path: Path) -> NormalizedTable:
    table = scored_table(ROWS)
    # Row groups of 7 rows: Arrow cuts record batches at them, not only every `batch_rows`.
    return write_normalized(
        iter(table.to_batches(max_chunksize=7)), table.schema, tmp_path / "in.parquet", "csv"
    )


def score(
    model: tuple[LoadedModel, ModelSignature],
    source: NormalizedTable,
    parts: Parts,
    batch_rows: int,
    destination: Path,
    stop: threading.Event | None = None,
) -> tuple[NormalizedTable, Progress]:
    run = ScoringRun(
        progress=Progress(total=ROWS),
        stop=stop or threading.Event(),
        batch_rows=batch_rows,
        input_column_stats=source.column_stats,
    )
    return score_file(*model, source.path, parts, run, destination), run.progress


def parts_in(directory: Path) -> Parts:
    directory.mkdir()
    return Parts(directory, ProjectCheckpointSealer(uuid.uuid4(), os.urandom(32)))


def test_parts_hold_the_predictions_and_the_output_every_row_with_them(
    model: tuple[LoadedModel, ModelSignature], source: NormalizedTable, tmp_path: Path
) -> None:
    parts = parts_in(tmp_path / "parts")

    written, progress = score(model, source, parts, 10, tmp_path / "out.parquet")

    names = [name for name, _, _ in output_columns(model[1])]
    finished = parts.finished()
    assert [rows for _, rows in finished] == [10, 10, 10, 10, 10, 3]
    assert {batch.schema.names == names for path, _ in finished for batch in parts.read(path)} == {
        True
    }
    assert (progress.rows, progress.parts) == (ROWS, 6)
    output = pq.read_table(written.path)
    assert output.column_names == ["amount", "count", "label", *names]
    assert output.select(["amount", "count", "label"]).equals(pq.read_table(source.path))
    predicted = pa.concat_tables(
        pa.Table.from_batches(list(parts.read(path))) for path, _ in finished
    )
    assert output.select(names).equals(predicted)
    assert written.row_count == ROWS


@pytest.mark.parametrize("whole_rows", [False, True])
def test_a_resumed_run_writes_what_one_run_writes_whatever_its_parts(
    model: tuple[LoadedModel, ModelSignature],
    source: NormalizedTable,
    tmp_path: Path,
    whole_rows: bool,
) -> None:
    one_run, _ = score(model, source, parts_in(tmp_path / "one"), 10, tmp_path / "one.parquet")
    expected = pq.read_table(one_run.path)
    # A run killed after 3 parts of 5 rows (15: no multiple of the resumed run's 8), which
    # left a part half written.
    parts = parts_in(tmp_path / "parts")
    first = ["amount", "count", "label"] if whole_rows else []
    names = first + [name for name, _, _ in output_columns(model[1])]
    for index in range(3):
        parts.write(index, expected.select(names).slice(index * 5, 5).to_batches()[0])
    (parts.directory / "part-000003-5.partial").write_bytes(b"cut short")

    resumed, progress = score(model, source, parts, 8, tmp_path / "resumed.parquet")

    assert pq.read_table(resumed.path).equals(expected)
    assert_same_stats(resumed.column_stats, one_run.column_stats)
    assert resumed.preview == one_run.preview
    assert [rows for _, rows in parts.finished()] == [5, 5, 5, 1, 8, 8, 8, 8, 5]
    assert (progress.rows, progress.parts) == (ROWS, 9)


def test_a_stopped_run_stops_before_its_next_part(
    model: tuple[LoadedModel, ModelSignature], source: NormalizedTable, tmp_path: Path
) -> None:
    stop = threading.Event()
    stop.set()
    parts = parts_in(tmp_path / "parts")

    with pytest.raises(Stopped):
        score(model, source, parts, 10, tmp_path / "out.parquet", stop)

    assert parts.finished() == []
