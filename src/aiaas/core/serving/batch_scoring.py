"""Scoring a dataset version's rows in a worker thread, part by part: what a batch prediction
job (`batch_prediction`) runs off the event loop.

The version's Parquet file is read in record batches, once: each is cut into model batches,
checked as a prediction request is (`check_inputs`), predicted by the loaded model, and written
twice: its prediction columns alone as one part, an Arrow IPC stream sealed with the project's
data key (as training checkpoints are) and renamed into the job's checkpoint directory once
whole, so that a killed worker leaves only whole parts; and the batch with its prediction
columns appended into the output version's normalized file, profiled on the way. A run that
resumes a job reads the predictions of the rows its finished parts hold from them, and scores
only the rest (`score_file`).

A part holds the predictions alone, not the rows they belong to: the rows are in the input
file, read anyway, and a whole-row part, written, read back and unsealed again to be joined,
cost more than the model on a 1M-row version of a small model.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from aiaas.core.data.tabular.normalized import NormalizedTable, write_normalized
from aiaas.core.model_inputs import check_inputs
from aiaas.core.runtimes import LoadedModel
from aiaas.core.signatures import STRING_DTYPES, ModelSignature, TensorSpec
from aiaas.core.training.checkpoint_sealing import ProjectCheckpointSealer

PREDICTED_PREFIX = "predicted_"
"""Before each prediction column's name: a version scored is often a test set that has the
target already, under the name a model's output may have (`label`)."""


def output_columns(signature: ModelSignature) -> list[tuple[str, TensorSpec, int | None]]:
    """The columns the predictions add, in signature order: (name, output, position within a
    2-D output or None)."""
    columns: list[tuple[str, TensorSpec, int | None]] = []
    for spec in signature.outputs:
        name = f"{PREDICTED_PREFIX}{spec.name}"
        if len(spec.shape) == 1:
            columns.append((name, spec, None))
        else:
            columns.extend((f"{name}_{i}", spec, i) for i in range(spec.shape[1]))
    return columns


def _arrow_type(spec: TensorSpec) -> pa.DataType:
    if spec.dtype in STRING_DTYPES:
        return pa.string()
    return pa.from_numpy_dtype(np.dtype(spec.dtype))


def output_problem(signature: ModelSignature) -> str | None:
    """Why a signature's outputs cannot become columns, if they cannot."""
    if not signature.inputs or not signature.outputs:
        return "the model version has no usable signature"
    for spec in signature.outputs:
        if len(spec.shape) not in (1, 2) or (len(spec.shape) == 2 and spec.shape[1] < 1):
            return f"its output {spec.name!r} is not a column or a fixed number of columns"
    return None


class Stopped(Exception):  # noqa: N818 - internal: ends the scoring thread at a part boundary
    pass


@dataclass
class Progress:
    """Shared between the scoring thread, which counts, and the relay, which publishes."""

    total: int
    rows: int = 0
    parts: int = 0


@dataclass
class ScoringRun:
    """What a run of a job's scoring thread shares with the job's runner."""

    progress: Progress
    stop: threading.Event
    """Set, the thread stops at its next record batch (`Stopped`)."""
    batch_rows: int
    """Rows per record batch, and so per part."""
    input_column_stats: dict[str, dict[str, Any]]
    """The scored version's statistics: those of the output's input columns, which are its
    columns unchanged (`write_normalized`'s `known_column_stats`)."""


def predict_record_batch(
    model: LoadedModel,
    signature: ModelSignature,
    columns: list[tuple[str, TensorSpec, int | None]],
    batch: pa.RecordBatch,
) -> pa.RecordBatch:
    """The prediction columns of `batch`'s rows, in their order."""
    inputs = {
        spec.name: batch.column(spec.name).to_numpy(zero_copy_only=False)
        for spec in signature.inputs
    }
    parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in signature.outputs}
    step = model.max_batch_size
    for start in range(0, batch.num_rows, step):
        # Checked as a request is: a NaN or a value of the wrong kind fails the job, naming it.
        checked = check_inputs(
            signature,
            {name: values[start : start + step] for name, values in inputs.items()},
            max_batch=step,
        )
        for name, values in model.predict_batch(checked).items():
            parts[name].append(values)
    outputs = {name: np.concatenate(values) for name, values in parts.items()}
    arrays = []
    for _, spec, position in columns:
        values = outputs[spec.name] if position is None else outputs[spec.name][:, position]
        arrays.append(pa.array(values, type=_arrow_type(spec)))
    return pa.RecordBatch.from_arrays(arrays, names=[name for name, _, _ in columns])


class Parts:
    """A job's scored parts: the prediction columns of one record batch each, sealed, in the
    job's checkpoint directory, named by index and row count. A part is renamed into place once
    whole, so what a killed worker leaves is only whole parts (and a temporary file, ignored)."""

    def __init__(self, directory: Path, sealer: ProjectCheckpointSealer) -> None:
        self.directory = directory
        self.sealer = sealer

    def finished(self) -> list[tuple[Path, int]]:
        """The whole parts, in order, with their row counts."""
        found = []
        for path in self.directory.glob("part-*.sealed"):
            _, index, rows = path.stem.split("-")
            found.append((int(index), path, int(rows)))
        return [(path, rows) for _, path, rows in sorted(found)]

    def write(self, index: int, batch: pa.RecordBatch) -> None:
        # Arrow's IPC format, not Parquet: a part is read once, by the same code, and writing
        # it as Parquet cost fifteen times as much (encoding, compressing), most of a job.
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        path = self.directory / f"part-{index:06d}-{batch.num_rows}.sealed"
        temporary = path.with_suffix(".partial")
        # No fsync: what a part guards against is a worker's death, after which the kernel still
        # holds what it wrote; a machine that dies takes its local checkpoint directory with it.
        temporary.write_bytes(self.sealer.seal(sink.getvalue().to_pybytes()))
        temporary.replace(path)

    def read(self, path: Path) -> Iterator[pa.RecordBatch]:
        with ipc.open_stream(pa.BufferReader(self.sealer.unseal(path.read_bytes()))) as reader:
            yield from reader


class _FinishedPredictions:
    """The predictions the finished parts hold, handed out in row order, so many rows at a time
    whatever the parts' sizes. Only the prediction columns are taken: a part written before
    parts held predictions alone holds its whole rows."""

    def __init__(self, parts: Parts, finished: list[tuple[Path, int]], names: list[str]) -> None:
        self._batches = (batch.select(names) for path, _ in finished for batch in parts.read(path))
        self._held: pa.RecordBatch | None = None

    def take(self, rows: int) -> list[pa.RecordBatch]:
        taken = []
        while rows > 0:
            if self._held is None or self._held.num_rows == 0:
                self._held = next(self._batches)
            piece = self._held.slice(0, rows)
            self._held = self._held.slice(piece.num_rows)
            taken.append(piece)
            rows -= piece.num_rows
        return taken


def _with_predictions(
    batch: pa.RecordBatch, predictions: list[pa.RecordBatch], schema: pa.Schema
) -> pa.RecordBatch:
    """`batch` with the prediction columns of `predictions` (its rows, in order) appended."""
    if len(predictions) == 1:
        columns = list(predictions[0].columns)
    else:
        columns = [
            pa.concat_arrays([piece.column(index) for piece in predictions])
            for index in range(predictions[0].num_columns)
        ]
    return pa.RecordBatch.from_arrays([*batch.columns, *columns], schema=schema)


def _read_ahead(parquet: pq.ParquetFile, batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
    """The file's record batches, the next one decoded on a thread of its own while the caller
    scores this one: Arrow decodes without the GIL, so on two cores reading costs the job next
    to nothing. One batch ahead keeps memory bounded. Arrow's own threads are not used: on a
    small machine they cost more to coordinate than they save (a 1M-row file decoded in half
    the time without them)."""
    batches = parquet.iter_batches(batch_size=batch_rows, use_threads=False)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-reader") as pool:
        try:
            ahead = pool.submit(next, batches, None)
            while (batch := ahead.result()) is not None:
                ahead = pool.submit(next, batches, None)
                yield batch
        finally:
            # However it ends, the thread is done with the file before anyone closes it.
            pool.shutdown(wait=True)
            batches.close()


def score_file(
    model: LoadedModel | None,
    signature: ModelSignature,
    source: Path,
    parts: Parts,
    job: ScoringRun,
    destination: Path,
) -> NormalizedTable:
    """Blocking: runs in a thread. Writes the output version's normalized file at
    `destination`: every row of `source` with its predictions, read from the finished parts
    for the rows they hold, scored (`model`) and written as parts for the others, one record
    batch, and one part, at a time."""
    columns = output_columns(signature)
    finished = parts.finished()
    done = sum(rows for _, rows in finished)
    job.progress.rows = done
    job.progress.parts = len(finished)
    held = _FinishedPredictions(parts, finished, [name for name, _, _ in columns])

    def scored(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in batches:
            if job.stop.is_set():
                raise Stopped
            covered = min(max(done - offset, 0), batch.num_rows)
            predictions = held.take(covered)
            if covered < batch.num_rows:
                if model is None:
                    raise RuntimeError("rows are left to score and no model was loaded")
                scored = predict_record_batch(model, signature, columns, batch.slice(covered))
                parts.write(job.progress.parts, scored)
                job.progress.parts += 1
                job.progress.rows += scored.num_rows
                predictions.append(scored)
            offset += batch.num_rows
            yield _with_predictions(batch, predictions, schema)

    with pq.ParquetFile(source) as parquet:
        if parquet.metadata.num_rows == 0:
            raise RuntimeError("the version has no rows to score")
        schema = pa.schema(
            [
                *parquet.schema_arrow,
                *(pa.field(name, _arrow_type(spec)) for name, spec, _ in columns),
            ]
        )
        batches = _read_ahead(parquet, job.batch_rows)
        try:
            return write_normalized(
                scored(batches),
                schema,
                destination,
                "derived",
                known_column_stats=job.input_column_stats,
            )
        finally:
            batches.close()  # its thread stopped before the file closes
