"""Scoring a dataset version's rows in a worker thread, part by part: what a batch prediction
job (`batch_prediction`) runs off the event loop.

The version's Parquet file is read in record batches; each is cut into model batches, checked
as a prediction request is (`check_inputs`), predicted by the loaded model, and written with its
prediction columns appended as one part: an Arrow IPC stream sealed with the project's data key
(as training checkpoints are) and renamed into the job's checkpoint directory once whole, so
that a killed worker leaves only whole parts. `score_file` skips the rows the finished parts
hold; `join_parts` joins them, in order, into the output version's normalized, profiled file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def predict_record_batch(
    model: LoadedModel,
    signature: ModelSignature,
    columns: list[tuple[str, TensorSpec, int | None]],
    batch: pa.RecordBatch,
) -> pa.RecordBatch:
    """`batch` with its prediction columns appended, rows in their order."""
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
    arrays = list(batch.columns)
    names = list(batch.schema.names)
    for name, spec, position in columns:
        values = outputs[spec.name] if position is None else outputs[spec.name][:, position]
        arrays.append(pa.array(values, type=_arrow_type(spec)))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


class Parts:
    """A job's scored parts: one sealed Parquet file per record batch, in the job's checkpoint
    directory, named by index and row count. A part is renamed into place once whole, so what
    a killed worker leaves is only whole parts (and a temporary file, ignored)."""

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


def _unscored(parquet: pq.ParquetFile, batch_rows: int, skip: int) -> Iterator[pa.RecordBatch]:
    """The file's record batches after its first `skip` rows."""
    offset = 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        end = offset + batch.num_rows
        if end > skip:
            yield batch if offset >= skip else batch.slice(skip - offset)
        offset = end


def score_file(
    model: LoadedModel,
    signature: ModelSignature,
    source: Path,
    parts: Parts,
    batch_rows: int,
    progress: Progress,
    stop: threading.Event,
) -> None:
    """Blocking: runs in a thread. Scores the rows no finished part holds, one record batch,
    and one part, at a time."""
    columns = output_columns(signature)
    finished = parts.finished()
    progress.rows = sum(rows for _, rows in finished)
    progress.parts = len(finished)
    parquet = pq.ParquetFile(source)
    try:
        for batch in _unscored(parquet, batch_rows, progress.rows):
            if stop.is_set():
                raise Stopped
            parts.write(progress.parts, predict_record_batch(model, signature, columns, batch))
            progress.parts += 1
            progress.rows += batch.num_rows
    finally:
        parquet.close()


def join_parts(signature: ModelSignature, parts: Parts, destination: Path) -> NormalizedTable:
    """Blocking: the parts, in order, as the output version's normalized file, profiled."""
    finished = parts.finished()
    schema = None
    for path, _ in finished[:1]:
        schema = next(parts.read(path)).schema
    if schema is None:
        raise RuntimeError("the version has no rows to score")

    def batches() -> Iterator[pa.RecordBatch]:
        for path, _ in finished:
            yield from parts.read(path)

    return write_normalized(batches(), schema, destination, "derived")
