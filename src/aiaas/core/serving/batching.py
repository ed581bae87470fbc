"""Adaptive batching: many small prediction requests become a few large model calls.

A model call costs nearly the same for 1 row as for 64: on a CPU or an accelerator the time goes
to reading the weights and to dispatch, not to the arithmetic of one more row. So each model
version gets one `AdaptiveBatcher`. Callers `submit` their rows and await them; one loop task
takes the first waiting request, gathers more until the batch holds `max_batch_size` rows or
`max_wait_ms` have passed since that first request arrived, runs the whole batch in a thread, and
hands every caller its own rows back.

Under load a batch is still running when the next requests arrive, so they wait in the queue; by
the time the thread is free the first of them has usually waited out `max_wait_ms` or the queue
holds a full batch, and the next batch leaves at once. Batches therefore grow with the load by
themselves, and a lone request waits at most `max_wait_ms`.

The queue is bounded in rows, not requests, because rows are what cost memory and time. A request
that would overflow it is refused at once with `QueueFullError` (a 503 with Retry-After) rather
than queued: under overload a fast refusal lets clients back off or go to another replica, while
an unbounded queue would only grow memory and every caller's latency.

A request may have more rows than a batch: it is queued as consecutive chunks of at most
`max_batch_size` rows, all at once or not at all, and answered with their outputs joined in row
order. Each chunk is a request like any other, so the last one batches with whatever waits behind
it. The most rows a request may have is the queue's size (a deployment's `maxQueueRows`), since
a larger one could never be queued whole; past it the request is refused with one `InputError`
that names the limit.

Nothing here imports JAX; the model is any `LoadedModel`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.core.errors import BatcherClosedError, BatchFailedError, InputError, QueueFullError
from aiaas.core.log_records import detached_context
from aiaas.core.model_inputs import InputChecker
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.request_chunks import check_request_rows, joined

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 30
"""Retry-After is a hint computed from the queue and the recent throughput; past half a minute
it says more about a stalled model than about when to come back."""

THROUGHPUT_SMOOTHING = 0.2
"""Weight of the newest batch in the moving average of rows per second behind Retry-After."""


@dataclass(frozen=True)
class BatchRecord:
    """One batch, as `on_batch` sees it: enough for a batch-size and a latency histogram."""

    rows: int
    requests: int
    """Requests in the batch, each chunk of a request larger than a batch counted as one."""
    waited_s: float
    """From the arrival of the batch's first request to the start of its execution."""
    execution_s: float
    """Time inside `predict_batch`, including concatenating and splitting the rows."""
    failed: bool


@dataclass(frozen=True)
class BatcherStats:
    """Counters since the batcher was created, for `/metrics`."""

    batches_run: int
    requests_run: int
    rows_run: int
    failed_batches: int
    rejected_requests: int
    queued_requests: int
    queued_rows: int
    batch_size_counts: Mapping[int, int]
    """Batches by their number of rows (bounded: at most `max_batch_size` keys)."""


@dataclass(eq=False)
class _Request:
    columns: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]
    arrived_at: float
    chunks: Sequence[asyncio.Future[dict[str, np.ndarray]]] = ()
    """When this is one chunk of a request larger than a batch: the futures of all of them,
    in order (one list, shared by the chunks)."""


class AdaptiveBatcher:
    """Batches the requests of one model version; see the module docstring.

    `executor` runs the batches; by default the batcher owns a one-thread executor, so one batch
    runs at a time per model and a slow model cannot take threads from anything else.
    `on_batch` is called on the event loop after every batch; it must be cheap."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue_size: int,
        executor: Executor | None = None,
        on_batch: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        if not 1 <= max_batch_size <= model.max_batch_size:
            raise ValueError(
                f"max_batch_size must be within 1..{model.max_batch_size} (the model's limit), "
                f"not {max_batch_size}"
            )
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, not {max_wait_ms}")
        if max_queue_size < max_batch_size:
            # Otherwise a request of max_batch_size rows could never be queued at all.
            raise ValueError(f"max_queue_size must be at least max_batch_size ({max_batch_size})")
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue_size = max_queue_size
        self.on_batch = on_batch
        self._checker = InputChecker(model.signature)
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="aiaas-batcher")
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._arrival = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Request] = []
        self._closing = False
        self._rows_per_s = 0.0
        self._batches_run = self._requests_run = self._rows_run = 0
        self._failed_batches = self._rejected_requests = 0
        self._batch_size_counts: Counter[int] = Counter()

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._closing:
            raise BatcherClosedError("this batcher has been closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"adaptive-batcher-{id(self):x}", context=detached_context()
            )

    async def close(self, drain: bool = True) -> None:
        """Refuse new requests, then return once nothing is running. With `drain`, every request
        already queued is answered first; without it, queued requests fail with
        `BatcherClosedError` and only the batch already running completes."""
        self._closing = True
        if not drain:
            self._fail_queued("the model is being unloaded")
        self._arrival.set()  # wake the loop, so that it sees it is closing
        if self._task is not None:
            # Shielded: a cancelled close must not cancel the loop half way through a batch.
            await asyncio.shield(self._task)
        else:
            self._fail_queued("the model is being unloaded")
        if self._owns_executor:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AdaptiveBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Requests ----------------------------------------------------------------------------------

    @property
    def max_request_rows(self) -> int:
        """The most rows one request may have: the queue's size, since a larger request could
        never be queued whole."""
        return self.max_queue_size

    async def submit(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Predict 1..max_request_rows rows: their outputs by name, rows in the order given.

        Raises `InputError` for inputs the signature refuses (a request over max_request_rows
        rows included), `QueueFullError` when the queue has no room for these rows,
        `BatcherClosedError` once closing, and `BatchFailedError` when the model fails."""
        if self._closing or self._task is None:
            raise BatcherClosedError("the model is not being served")
        return await self.submit_checked(self.check(columns))

    def check(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> dict[str, np.ndarray]:
        """The request's inputs as `check_inputs` vets them for this model, or `InputError`.
        For a caller that wants the vetted arrays too (to sample them): then `submit_checked`."""
        check_request_rows(columns, self.max_request_rows)
        checked = self._checker.check(columns, max_batch=self.max_request_rows)
        if not checked:
            raise InputError("the model takes no inputs to predict from")
        return checked

    async def submit_checked(self, checked: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`submit` for inputs that `check` returned."""
        if self._closing or self._task is None:
            raise BatcherClosedError("the model is not being served")
        rows = len(next(iter(checked.values())))
        if self._queued_rows + rows > self.max_queue_size:
            self._rejected_requests += 1
            raise QueueFullError(
                f"the model's queue is full ({self._queued_rows} rows waiting)",
                retry_after_s=self._retry_after_s(),
            )
        loop = asyncio.get_running_loop()
        if rows <= self.max_batch_size:
            request = _Request(checked, rows, loop.create_future(), loop.time())
            self._queue.append(request)
            self._queued_rows += rows
            self._arrival.set()
            # A caller that gives up cancels its future; the loop then drops the request unrun.
            return await request.future
        arrived_at = loop.time()
        futures: list[asyncio.Future[dict[str, np.ndarray]]] = []
        # One chunk per batch's worth of rows, queued together with nothing in between.
        for start in range(0, rows, self.max_batch_size):
            stop = min(start + self.max_batch_size, rows)
            chunk = {name: values[start:stop] for name, values in checked.items()}
            future = loop.create_future()
            self._queue.append(_Request(chunk, stop - start, future, arrived_at, futures))
            futures.append(future)
        self._queued_rows += rows
        self._arrival.set()
        return await joined(futures)

    def stats(self) -> BatcherStats:
        return BatcherStats(
            batches_run=self._batches_run,
            requests_run=self._requests_run,
            rows_run=self._rows_run,
            failed_batches=self._failed_batches,
            rejected_requests=self._rejected_requests,
            queued_requests=len(self._queue),
            queued_rows=self._queued_rows,
            batch_size_counts=dict(self._batch_size_counts),
        )

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch (not those of the batch running)."""
        return self._queued_rows

    def _retry_after_s(self) -> int:
        if self._rows_per_s <= 0:
            return 1
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(self._queued_rows / self._rows_per_s)))

    # The loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (batch := await self._gather(loop)) is not None:
                if batch:
                    await self._execute(batch, loop)
        except BaseException:
            # Only a bug or the event loop's own shutdown gets here: let no caller wait forever.
            self._closing = True
            self._fail(self._in_flight, "the model's batching loop stopped")
            self._fail_queued("the model's batching loop stopped")
            raise

    def _pop_abandoned(self) -> None:
        """Drop requests whose callers gave up while they waited."""
        while self._queue and self._queue[0].future.done():
            self._queued_rows -= self._queue.popleft().rows

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[_Request] | None:
        """The next batch, in arrival order; None once closing and nothing is left."""
        while True:
            self._pop_abandoned()
            if self._queue:
                break
            if self._closing:
                return None
            self._arrival.clear()
            await self._arrival.wait()
        deadline = self._queue[0].arrived_at + self.max_wait_s
        batch: list[_Request] = []
        rows = 0
        while rows < self.max_batch_size:
            self._pop_abandoned()
            if self._queue:
                head = self._queue[0]
                if rows + head.rows > self.max_batch_size:
                    break  # first come, first served: nothing behind it may jump ahead
                self._queue.popleft()
                self._queued_rows -= head.rows
                batch.append(head)
                rows += head.rows
                continue
            remaining = deadline - loop.time()
            if self._closing or remaining <= 0:
                break  # while closing nothing else can arrive: waiting would only delay
            self._arrival.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrival.wait()
            except TimeoutError:
                break
        return batch

    async def _execute(self, batch: list[_Request], loop: asyncio.AbstractEventLoop) -> None:
        rows = sum(request.rows for request in batch)
        waited_s = loop.time() - batch[0].arrived_at
        self._in_flight = batch
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, _predict, self.model, [request.columns for request in batch]
            )
        except Exception as error:
            # Logged once here: every caller of the batch gets its own exception, chained to it.
            logger.exception("the model failed on a batch of %d rows", rows, exc_info=error)
            failed = True
            for request in batch:
                if not request.future.done():
                    failure = BatchFailedError(f"the model failed on this batch: {error}")
                    failure.__cause__ = error
                    request.future.set_exception(failure)
                # Its request has failed: the rest of it is dropped now, before the next
                # batch is gathered, not once its caller hears of the failure. (Its earlier
                # chunks are answered: the queue is first come, first served.)
                for chunk in request.chunks:
                    chunk.cancel()
        else:
            failed = False
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        finally:
            self._in_flight = []
        execution_s = time.perf_counter() - started
        self._record(BatchRecord(rows, len(batch), waited_s, execution_s, failed))

    def _record(self, record: BatchRecord) -> None:
        self._batches_run += 1
        self._requests_run += record.requests
        self._rows_run += record.rows
        self._failed_batches += record.failed
        self._batch_size_counts[record.rows] += 1
        if not record.failed and record.execution_s > 0:
            rate = record.rows / record.execution_s
            self._rows_per_s = (
                rate
                if self._rows_per_s == 0
                else (1 - THROUGHPUT_SMOOTHING) * self._rows_per_s + THROUGHPUT_SMOOTHING * rate
            )
        if self.on_batch is not None:
            try:
                self.on_batch(record)
            except Exception:
                # Monitoring must never break serving.
                logger.exception("on_batch callback failed")

    def _fail_queued(self, reason: str) -> None:
        queued = list(self._queue)
        self._queue.clear()
        self._queued_rows = 0
        self._fail(queued, reason)

    @staticmethod
    def _fail(requests: Sequence[_Request], reason: str) -> None:
        # One exception per caller: an exception object raised in several tasks would collect
        # all of their tracebacks.
        for request in requests:
            if not request.future.done():
                request.future.set_exception(BatcherClosedError(reason))


def _predict(
    model: LoadedModel, requests: Sequence[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Runs in the executor thread: concatenating and splitting a batch is numpy work that
    would otherwise hold up the event loop."""
    if len(requests) == 1:
        columns = requests[0]
    else:
        columns = {
            name: np.concatenate([request[name] for request in requests]) for name in requests[0]
        }
    row_counts = [len(next(iter(request.values()))) for request in requests]
    outputs = model.predict_batch(columns)
    total = sum(row_counts)
    for name, values in outputs.items():
        if len(values) != total:
            raise RuntimeError(f"the model returned {len(values)} rows of {name!r} for {total}")
    results = []
    start = 0
    for rows in row_counts:
        # Views into the batch's outputs, not copies: slicing is all a caller needs.
        results.append({name: values[start : start + rows] for name, values in outputs.items()})
        start += rows
    return results
