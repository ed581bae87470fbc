"""Writing metric history: `MetricWriter` takes the points a training thread reports and writes
them to `metric_points` with COPY, in micro-batches.

A training thread reports a handful of metrics (loss, accuracy, ...) every step. `MetricWriter`
buffers them and writes them with `copy_records_to_table` in micro-batches from the worker's event
loop (DESIGN.md section 8), so that reporting a point costs the training thread well under a
microsecond and never waits on the database.

A point added twice (a retried flush that had in fact committed, a step reported twice) is stored
once, whether the two are in one batch or in two: the value stored first stays (in one batch, the
one added first). The fast path does not look for duplicates; the COPY's unique violation sends
that one batch to a slower `INSERT ... ON CONFLICT DO NOTHING`. What the stored history means,
and how it is read, is in `metric_history.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Final
from uuid import UUID

import asyncpg

from aiaas.core.errors import DatabaseUnavailableError, InputError, MetricWriterError
from aiaas.core.storage import Connection, MetadataStore
from aiaas.core.training.metric_history import MAX_STEP, check_key, check_step

_COLUMNS: Final = ("job_id", "key", "step", "value")
_MAX_REMEMBERED_KEYS: Final = 1_000

logger = logging.getLogger(__name__)

Record = tuple[str, str, int, float]
"""One row of `metric_points`, in the order of `_COLUMNS`. The job id is its text: a tuple of
str, int and float only is one the garbage collector stops tracking, while one holding a UUID
object is traversed by every collection while it waits in the buffer (that doubled the cost of
add()); and asyncpg encodes the text as fast as its own UUID type, twice as fast as uuid.UUID."""


def _coerced_value(key: str, value: object) -> float:
    # Text that happens to parse as a number is a caller's bug, not a metric.
    if isinstance(value, str | bytes):
        raise InputError(f"metric {key!r} is not a number", field_errors={key: "type"})
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"metric {key!r} is not a number", field_errors={key: "type"}) from None


_INSERT_NEW_POINTS = """
INSERT INTO metric_points (job_id, key, step, value)
SELECT $1, batch.key, batch.step, batch.value
FROM unnest($2::text[], $3::bigint[], $4::float8[]) AS batch(key, step, value)
ON CONFLICT (job_id, key, step) DO NOTHING
"""

# Failures that say nothing about the batch itself: the same batch may well succeed if tried
# again. A retried batch that had in fact committed meets the unique violation path.
_TRANSIENT_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    DatabaseUnavailableError,
)


async def _copy_points(connection: Connection, records: list[Record]) -> None:
    await connection.copy_records_to_table("metric_points", records=records, columns=_COLUMNS)


async def _insert_new_points(connection: Connection, job_id: UUID, records: list[Record]) -> None:
    """The slow path, for a batch holding points that are already stored or repeated: the
    first of each (key, step) wins, as ON CONFLICT DO NOTHING lets the stored one win."""
    first: dict[tuple[str, int], float] = {}
    for _, key, step, value in records:
        first.setdefault((key, step), value)
    await connection.execute(
        _INSERT_NEW_POINTS,
        job_id,
        [key for key, _ in first],
        [step for _, step in first],
        list(first.values()),
    )


class MetricWriter:
    """Writes one running job's metric points to `metric_points`, in bulk.

    `add()` is called from the training thread: it validates the points and appends them to a
    buffer under a lock, and calls into the event loop only when a batch has filled. On the
    event loop (`start()`, or `async with`), `concurrent_flushes` flush tasks each take up to
    `max_batch_points` from the buffer once `batch_points` are waiting or the oldest has waited
    `flush_interval_s`, and COPY them. Several COPYs run at once because the server, not the
    client, is the bottleneck: each row costs the server a foreign key check and a primary key
    insertion, and one COPY keeps one server process, so one core, busy. Batches grow towards
    `max_batch_points` by themselves when the database falls behind, which makes each row
    cheaper; `add()` blocks once `max_buffered_points` wait, rather than let memory grow
    without bound.

    A batch that fails for a transient reason (connection lost, deadlock) is tried again up to
    `retry_attempts` times. Any other failure, or one that persists, stops the writer: `flush()`
    and `close()` raise it, `add()` raises `MetricWriterError`, and the points not yet written
    are discarded. The job is then failed and, on a retry, resumed from its last checkpoint,
    which drops the points after that step and reports them again; keeping them would only grow
    the memory of a writer that can no longer write.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        job_id: UUID,
        *,
        batch_points: int = 20_000,
        max_batch_points: int = 100_000,
        flush_interval_s: float = 1.0,
        concurrent_flushes: int = 2,
        max_buffered_points: int = 1_000_000,
        retry_attempts: int = 3,
        retry_delay_s: float = 0.2,
    ) -> None:
        if not 1 <= batch_points <= max_batch_points <= max_buffered_points:
            raise ValueError("need 1 <= batch_points <= max_batch_points <= max_buffered_points")
        if concurrent_flushes < 1 or flush_interval_s <= 0 or retry_attempts < 0:
            raise ValueError("need concurrent_flushes >= 1, flush_interval_s > 0, retries >= 0")
        self._metadata = metadata
        self._job_id = job_id
        self._job_text = str(job_id)
        self._batch_points = batch_points
        self._max_batch_points = max_batch_points
        self._flush_interval_s = flush_interval_s
        self._concurrent_flushes = concurrent_flushes
        self._max_buffered_points = max_buffered_points
        self._retry_attempts = retry_attempts
        self._retry_delay_s = retry_delay_s

        self._valid_keys: set[str] = set()
        """Keys already checked: a run reports the same few keys at every step. It only grows,
        each change one call that holds the GIL, so add() reads it without the lock."""

        # Shared with the training thread, under `_mutex`; add() waits on `_room` for room.
        self._mutex = threading.Lock()
        self._room = threading.Condition(self._mutex)
        self._buffer: list[Record] = []
        self._buffered_since = 0.0
        """time.monotonic() when the oldest buffered point was added."""
        self._added = 0
        """Points accepted so far; `flush()` waits until all of them are committed."""
        self._taken = 0
        """Points taken from the buffer so far, in order."""
        self._wake_requested = False
        self._refusal: str | None = None
        self._failure: BaseException | None = None

        # Event loop side.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._batch_ready = asyncio.Event()
        self._progress = asyncio.Condition()
        self._in_flight: dict[int, int] = {}
        """Each batch being written (by id), with the position of its first point."""
        self._flush_target = 0
        self._closing = False
        self._flushers: list[asyncio.Task[None]] = []

    # The training thread's side ---------------------------------------------------------------

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer the metrics of one step. Thread-safe; no I/O. Raises `InputError` (and buffers
        none of them) if the step, a key or a value is invalid, and `MetricWriterError` once the
        writer is closed or has failed."""
        # The common case is checked inline: this runs for every step of every training run.
        if type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_step(step)
        if not self._valid_keys.issuperset(metrics):
            self._check_keys(metrics)
        job_id = self._job_text
        records = [
            (job_id, key, step, value if type(value) is float else _coerced_value(key, value))
            for key, value in metrics.items()
        ]
        with self._mutex:
            if self._refusal is not None or len(self._buffer) >= self._max_buffered_points:
                self._wait_for_room()
            if not self._buffer:
                self._buffered_since = time.monotonic()
            self._buffer += records
            self._added += len(records)
            if self._wake_requested or len(self._buffer) < self._batch_points:
                return
            self._wake_requested = True
        # Once per batch, not per point: the flush tasks otherwise wake on their own timer.
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._batch_ready.set)
            except RuntimeError:  # the loop is closed: whoever owned it will see nothing flushed
                raise MetricWriterError("the writer's event loop is closed") from None

    def _check_keys(self, metrics: Mapping[str, float]) -> None:
        for key in metrics:
            check_key(key)
        if len(self._valid_keys) < _MAX_REMEMBERED_KEYS:
            self._valid_keys.update(metrics)

    def _wait_for_room(self) -> None:
        """With `_mutex` held: wait while the buffer is full, unless that would never end."""
        while (
            self._refusal is None
            and len(self._buffer) >= self._max_buffered_points
            and self._loop is not None  # before start() nothing would make room
            and threading.get_ident() != self._loop_thread  # waiting there would deadlock
        ):
            self._room.wait(0.5)
        if self._refusal is not None:
            raise MetricWriterError(self._refusal) from self._failure

    # The event loop's side --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the flush tasks on the running event loop; `async with` does it too."""
        self._start()

    def _start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._flushers = [
            asyncio.create_task(self._flush_batches(), name=f"metric-writer-{self._job_id}")
            for _ in range(self._concurrent_flushes)
        ]

    async def flush(self) -> None:
        """Return once every point added before this call is committed; raise if a flush
        failed."""
        self._start()
        with self._mutex:
            target = self._added
        self._flush_target = max(self._flush_target, target)
        self._batch_ready.set()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._failure is not None or self._committed_up_to() >= target
            )
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
        """Refuse further points, write those buffered and stop; raise if a flush failed."""
        self._start()
        self._refuse("the metric writer is closed")
        self._closing = True
        self._batch_ready.set()
        try:
            await asyncio.gather(*self._flushers)
        except asyncio.CancelledError:
            for flusher in self._flushers:
                flusher.cancel()
            raise
        if self._failure is not None:
            raise self._failure

    async def __aenter__(self) -> MetricWriter:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        # The body's exception matters more than a failed flush, which would only mask it.
        try:
            await self.close()
        except Exception:
            logger.warning(
                "closing the metric writer of job %s failed", self._job_id, exc_info=True
            )

    def _committed_up_to(self) -> int:
        """How many of the points added, counted in order, are committed."""
        return min(self._in_flight.values(), default=self._taken)

    def _refuse(self, reason: str, failure: BaseException | None = None) -> None:
        with self._mutex:
            if failure is not None and self._failure is None:
                self._refusal, self._failure = reason, failure
                self._buffer = []  # discarded: see the class docstring
            elif self._refusal is None:
                self._refusal = reason
            self._room.notify_all()

    def _take_batch(self) -> tuple[int, list[Record]] | None:
        """The next batch if one is due, with the position of its first point."""
        with self._mutex:
            waiting = len(self._buffer)
            if not waiting:
                self._wake_requested = False
                return None
            due = (
                waiting >= self._batch_points
                or self._closing
                or self._taken < self._flush_target
                or time.monotonic() - self._buffered_since >= self._flush_interval_s
            )
            if not due:
                self._wake_requested = False
                return None
            batch = self._buffer[: self._max_batch_points]
            del self._buffer[: self._max_batch_points]
            start, self._taken = self._taken, self._taken + len(batch)
            self._buffered_since = time.monotonic()
            # While a full batch is still waiting, add() need not call into the loop: the task
            # that took this one wakes another (see `_flush_batches`).
            self._wake_requested = len(self._buffer) >= self._batch_points
            self._room.notify_all()  # an add() may be waiting for room
        if self._wake_requested:
            self._batch_ready.set()
        return start, batch

    def _wait_s(self) -> float:
        with self._mutex:
            if not self._buffer:
                return self._flush_interval_s
            elapsed = time.monotonic() - self._buffered_since
        return max(0.0, self._flush_interval_s - elapsed)

    async def _flush_batches(self) -> None:
        """One flush task: take a batch when one is due, write it, and again, until closed."""
        while self._failure is None:
            taken = self._take_batch()
            if taken is None:
                if self._closing:
                    return
                self._batch_ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._wait_s()):
                        await self._batch_ready.wait()
                continue
            start, batch = taken
            batch_id = id(batch)
            self._in_flight[batch_id] = start
            try:
                await self._write(batch)
            except Exception as error:
                self._refuse("a flush of the metric writer failed", error)
            finally:
                del self._in_flight[batch_id]
                async with self._progress:
                    self._progress.notify_all()
            # Another task may be waiting for the batch left over after this one's.
            if self._failure is not None or self._closing:
                self._batch_ready.set()

    async def _write(self, batch: list[Record]) -> None:
        attempt = 0
        deduplicate = False
        while True:
            try:
                async with self._metadata.acquire() as connection:
                    if deduplicate:
                        await _insert_new_points(connection, self._job_id, batch)
                    else:
                        await _copy_points(connection, batch)
                return
            except asyncpg.UniqueViolationError:
                if deduplicate:
                    raise
                deduplicate = True
            except _TRANSIENT_ERRORS:
                attempt += 1
                if attempt > self._retry_attempts:
                    raise
                await asyncio.sleep(self._retry_delay_s * 2 ** (attempt - 1))
