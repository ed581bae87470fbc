"""The adaptive batcher over a pure-numpy model: batch sizes, waiting, order, the bounded queue,
draining, and failures that stay within their batch.

The model is a real `LoadedModel`, only a trivial one: the batcher is what is under test. It can
be held at a gate (a `threading.Event`) so that a test decides exactly what is queued while a
batch runs. No assertion is about time; every wait is bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import pytest

from aiaas.core.errors import (
    BatcherClosedError,
    BatchFailedError,
    InputError,
    QueueFullError,
    ServiceUnavailableError,
)
from aiaas.core.runtimes import LoadedModel
from aiaas.core.serving.batching import AdaptiveBatcher, BatchRecord
from aiaas.core.signatures import ModelSignature, TensorSpec

WAIT_S = 10
"""Bound on every wait: far above what any step needs, so that only a hang reaches it."""
LONG_WAIT_MS = 60_000
"""A max_wait_ms that no test waits out: batches then leave only when they are full."""

T = TypeVar("T")

SIGNATURE = ModelSignature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=(-1,)),),
    outputs=(TensorSpec(name="doubled", dtype="float32", shape=(-1,)),),
)


class DoublingModel(LoadedModel):
    """Doubles `x`, records each batch's size, fails on a negative value, and waits at `gate`
    (open unless a test closes it) once it has set `started`."""

    def __init__(self, max_batch_size: int = 64) -> None:
        super().__init__(SIGNATURE, max_batch_size)
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def warm_up(self) -> None:
        pass

    @property
    def compilations(self) -> int:
        return 0

    def predict_batch(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.started.set()
        assert self.gate.wait(WAIT_S)
        values = columns["x"]
        self.batch_sizes.append(len(values))
        if (values < 0).any():
            raise ValueError("negative input")
        return {"doubled": values * 2}


@asynccontextmanager
async def running(model: LoadedModel, **settings: Any) -> AsyncIterator[AdaptiveBatcher]:
    settings = {"max_batch_size": 4, "max_wait_ms": LONG_WAIT_MS, "max_queue_size": 64, **settings}
    batcher = AdaptiveBatcher(model, **settings)
    batcher.start()
    try:
        yield batcher
    finally:
        if isinstance(model, DoublingModel):
            model.gate.set()
        async with asyncio.timeout(WAIT_S):
            await batcher.close()


async def bounded(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT_S):
        return await awaitable


async def until(condition: Any) -> None:
    """Yield to the event loop until `condition()` holds (the loop, not a clock, decides)."""
    async with asyncio.timeout(WAIT_S):
        # The condition is the batcher's internal state, which has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def hold_first_batch(batcher: AdaptiveBatcher, model: DoublingModel) -> asyncio.Task[Any]:
    """Close the gate and get one full batch of 0.5s running (and stuck) behind it: full, so that
    it leaves without waiting for max_wait_ms."""
    model.gate.clear()
    in_flight = asyncio.create_task(batcher.submit({"x": [0.5] * batcher.max_batch_size}))
    await bounded(asyncio.to_thread(model.started.wait, WAIT_S))
    return in_flight


async def test_requests_batch_up_to_max_batch_size() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4) as batcher:
        # All twelve are queued before the loop runs again; with a wait no test sees end, only
        # full batches can leave.
        results = await bounded(asyncio.gather(*(batcher.submit({"x": [i]}) for i in range(12))))
    assert model.batch_sizes == [4, 4, 4]
    assert [result["doubled"].tolist() for result in results] == [[2.0 * i] for i in range(12)]
    stats = batcher.stats()
    assert (stats.batches_run, stats.requests_run, stats.rows_run) == (3, 12, 12)
    assert stats.batch_size_counts == {4: 3}


async def test_a_request_that_does_not_fit_starts_the_next_batch() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1) as batcher:
        sizes = [3, 3, 2]
        await bounded(asyncio.gather(*(batcher.submit({"x": [1.0] * n}) for n in sizes)))
        assert model.batch_sizes == [3, 3, 2]  # first come, first served: the 2 does not jump


# Requests larger than a batch -------------------------------------------------------------------


async def test_a_request_larger_than_a_batch_is_split_and_answered_in_order() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        large = asyncio.create_task(batcher.submit({"x": [float(i) for i in range(11)]}))
        small = asyncio.create_task(batcher.submit({"x": [100.0]}))
        await until(lambda: batcher.queued_rows == 12)
        model.gate.set()
        answer = await bounded(large)
        await bounded(asyncio.gather(in_flight, small))

    assert answer["doubled"].tolist() == [2.0 * i for i in range(11)]
    assert (await small)["doubled"].tolist() == [200.0]
    # Chunks of 4, 4 and 3 rows; the last one batched with the request behind it, which only a
    # full batch could send out (no test waits out max_wait_ms).
    assert model.batch_sizes == [4, 4, 4, 4]
    stats = batcher.stats()
    assert (stats.requests_run, stats.rows_run) == (1 + 3 + 1, 4 + 11 + 1)


async def test_a_split_request_equals_its_parts_sent_one_by_one() -> None:
    values = [float(i) / 7 for i in range(114)]
    settings = {"max_batch_size": 32, "max_wait_ms": 1, "max_queue_size": 128}
    async with running(DoublingModel(max_batch_size=32), **settings) as b:
        whole = await bounded(b.submit({"x": values}))
        parts = [await bounded(b.submit({"x": values[i : i + 32]})) for i in range(0, 114, 32)]
    assert whole["doubled"].tolist() == [
        value for part in parts for value in part["doubled"].tolist()
    ]


async def test_a_request_over_the_queue_size_is_refused_once_naming_the_limit() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_queue_size=10) as batcher:
        assert batcher.max_request_rows == 10
        with pytest.raises(InputError) as caught:
            # Three inputs, two of them unknown: the size is still told once, for the request.
            await batcher.submit({"x": [1.0] * 11, "y": [1.0] * 11, "z": [1.0] * 11})
    error = caught.value
    assert error.field_errors == {"inputs": "11 rows; at most 10"}
    assert error.message.count("10") == 1
    assert "maxQueueRows" in error.message
    assert model.batch_sizes == []
    assert batcher.stats().rejected_requests == 0  # bad input, not a full queue


async def test_a_split_request_is_queued_whole_or_not_at_all() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1, max_queue_size=12) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        waiting = asyncio.create_task(batcher.submit({"x": [1.0] * 3}))
        await until(lambda: batcher.queued_rows == 3)

        with pytest.raises(QueueFullError):
            await batcher.submit({"x": [2.0] * 10})  # fits the limit, not the room left
        assert (batcher.queued_rows, batcher.stats().queued_requests) == (3, 1)
        fits = asyncio.create_task(batcher.submit({"x": [2.0] * 9}))
        await until(lambda: batcher.queued_rows == 12)
        model.gate.set()
        assert (await bounded(fits))["doubled"].tolist() == [4.0] * 9
        await bounded(asyncio.gather(in_flight, waiting))


async def test_a_failing_chunk_fails_its_request_and_drops_the_rest_unrun(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        # The second chunk holds the negative value; the third and fourth must never run.
        failing = asyncio.create_task(batcher.submit({"x": [1.0] * 4 + [-1.0] * 4 + [1.0] * 8}))
        await until(lambda: batcher.queued_rows == 16)
        model.gate.set()
        with pytest.raises(BatchFailedError):
            await bounded(failing)
        await bounded(in_flight)
        assert (await bounded(batcher.submit({"x": [5.0]})))["doubled"].tolist() == [10.0]
    assert model.batch_sizes == [4, 4, 4, 1]
    assert batcher.queued_rows == 0
    gc.collect()  # an exception never retrieved is reported when its future is collected
    assert "never retrieved" not in caplog.text


async def test_a_caller_that_gives_up_on_a_split_request_drops_every_chunk() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        abandoned = asyncio.create_task(batcher.submit({"x": [9.0] * 10}))
        kept = asyncio.create_task(batcher.submit({"x": [3.0]}))
        await until(lambda: batcher.queued_rows == 11)
        abandoned.cancel()
        model.gate.set()
        assert (await bounded(kept))["doubled"].tolist() == [6.0]
        await bounded(in_flight)
        with pytest.raises(asyncio.CancelledError):
            await abandoned
    assert model.batch_sizes == [4, 1]
    assert batcher.queued_rows == 0


async def test_max_wait_flushes_a_partial_batch() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=64, max_wait_ms=20) as batcher:
        results = await bounded(asyncio.gather(*(batcher.submit({"x": [i]}) for i in range(3))))
    # Far from full, and nothing else arrives: only the wait can have sent it.
    assert model.batch_sizes == [3]
    assert [result["doubled"].tolist() for result in results] == [[0.0], [2.0], [4.0]]


async def test_200_concurrent_callers_each_get_their_own_rows_in_order() -> None:
    model = DoublingModel(max_batch_size=16)
    draw = random.Random(3)
    requests = [
        [caller * 100.0 + row for row in range(draw.randint(1, 8))] for caller in range(200)
    ]
    records: list[BatchRecord] = []
    settings = {"max_batch_size": 16, "max_wait_ms": 2, "max_queue_size": 8 * 200}
    async with running(model, on_batch=records.append, **settings) as batcher:
        results = await bounded(asyncio.gather(*(batcher.submit({"x": x}) for x in requests)))

    for sent, result in zip(requests, results, strict=True):
        assert result["doubled"].tolist() == [2 * value for value in sent]
    assert sum(model.batch_sizes) == sum(map(len, requests))
    assert max(model.batch_sizes) <= 16
    assert len(model.batch_sizes) < 200  # they were batched, not run one by one
    assert [record.rows for record in records] == model.batch_sizes
    assert sum(record.requests for record in records) == 200
    assert all(record.execution_s >= 0 and record.waited_s >= 0 for record in records)


async def test_a_full_queue_refuses_with_retry_after_and_never_grows() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_queue_size=10) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        queued = [asyncio.create_task(batcher.submit({"x": [1.0, 2.0, 3.0]})) for _ in range(3)]
        await until(lambda: batcher.queued_rows == 9)

        with pytest.raises(QueueFullError) as caught:
            await batcher.submit({"x": [1.0, 2.0]})
        error = caught.value
        assert isinstance(error, ServiceUnavailableError)
        assert error.http_status == 503
        assert error.retry_after_s >= 1
        assert error.extensions["retryAfter"] == error.retry_after_s

        # Requests of random sizes against the full queue: each either fits or is refused,
        # and the queue never holds more than its bound, nor keeps what it refused.
        draw = random.Random(5)
        for _ in range(50):
            rows = draw.randint(1, 4)
            task = asyncio.create_task(batcher.submit({"x": [1.0] * rows}))
            await asyncio.sleep(0)
            if task.done():
                with pytest.raises(QueueFullError):
                    task.result()
            else:
                queued.append(task)
            assert batcher.queued_rows <= 10
        stats = batcher.stats()
        assert stats.queued_rows == batcher.queued_rows == 10  # the 1-row requests filled it
        assert stats.queued_requests == len(queued)
        assert stats.rejected_requests == 1 + 50 - (len(queued) - 3)

        model.gate.set()
        results = await bounded(asyncio.gather(in_flight, *queued))
    assert [len(result["doubled"]) for result in results] == [4, 3, 3, 3, 1]
    assert model.batch_sizes == [4, 3, 3, 4]


async def test_close_drains_queued_requests_then_refuses_new_ones() -> None:
    model = DoublingModel()
    batcher = AdaptiveBatcher(model, max_batch_size=4, max_wait_ms=LONG_WAIT_MS, max_queue_size=64)
    batcher.start()
    in_flight = await hold_first_batch(batcher, model)
    queued = [asyncio.create_task(batcher.submit({"x": [i]})) for i in range(6)]
    await until(lambda: batcher.queued_rows == 6)

    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)  # close() has begun: it refuses new requests from its first step
    with pytest.raises(BatcherClosedError):
        await batcher.submit({"x": [1.0]})
    assert not closing.done()
    model.gate.set()
    await bounded(closing)

    # Everything queued was answered before close returned, without waiting for max_wait_ms.
    assert all(task.done() for task in queued)
    assert [task.result()["doubled"].tolist() for task in queued] == [[2.0 * i] for i in range(6)]
    assert in_flight.result()["doubled"].tolist() == [1.0] * 4
    assert model.batch_sizes == [4, 4, 2]
    with pytest.raises(BatcherClosedError):
        await batcher.submit({"x": [1.0]})


async def test_close_without_draining_fails_queued_requests_only() -> None:
    model = DoublingModel()
    batcher = AdaptiveBatcher(model, max_batch_size=4, max_wait_ms=LONG_WAIT_MS, max_queue_size=64)
    batcher.start()
    in_flight = await hold_first_batch(batcher, model)
    queued = asyncio.create_task(batcher.submit({"x": [1.0]}))
    await until(lambda: batcher.queued_rows == 1)

    closing = asyncio.create_task(batcher.close(drain=False))
    with pytest.raises(BatcherClosedError):
        await bounded(queued)
    model.gate.set()
    await bounded(closing)
    assert (await in_flight)["doubled"].tolist() == [1.0] * 4  # the running batch completes


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1) as batcher:
        values = [0.0, -1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # the -1 is in the first batch only
        results = await bounded(
            asyncio.gather(
                *(batcher.submit({"x": [value]}) for value in values), return_exceptions=True
            )
        )
        assert model.batch_sizes == [4, 4]
        for result in results[:4]:
            assert isinstance(result, BatchFailedError)
            assert isinstance(result.__cause__, ValueError)
            assert result.http_status == 500
        assert len({id(result) for result in results[:4]}) == 4  # one exception per caller
        assert [result["doubled"].tolist() for result in results[4:]] == [
            [8.0],
            [10.0],
            [12.0],
            [14.0],
        ]
        # The batcher keeps serving.
        assert (await bounded(batcher.submit({"x": [1.0]})))["doubled"].tolist() == [2.0]
        assert batcher.stats().failed_batches == 1


async def test_a_caller_that_gives_up_is_dropped_from_the_queue() -> None:
    model = DoublingModel()
    async with running(model, max_batch_size=4, max_wait_ms=1) as batcher:
        in_flight = await hold_first_batch(batcher, model)
        abandoned = asyncio.create_task(batcher.submit({"x": [9.0, 9.0, 9.0]}))
        kept = asyncio.create_task(batcher.submit({"x": [3.0]}))
        await until(lambda: batcher.queued_rows == 4)
        abandoned.cancel()
        model.gate.set()
        assert (await bounded(kept))["doubled"].tolist() == [6.0]
        await bounded(in_flight)
        with pytest.raises(asyncio.CancelledError):
            await abandoned
    assert model.batch_sizes == [4, 1]  # the abandoned rows never ran
    assert batcher.queued_rows == 0


async def test_a_failing_monitoring_callback_does_not_break_serving() -> None:
    def broken(record: BatchRecord) -> None:
        raise RuntimeError("monitoring is down")

    async with running(DoublingModel(), max_wait_ms=1, on_batch=broken) as batcher:
        assert (await bounded(batcher.submit({"x": [1.0]})))["doubled"].tolist() == [2.0]


async def test_settings_that_cannot_work_are_refused() -> None:
    model = DoublingModel(max_batch_size=8)
    with pytest.raises(ValueError, match="the model's limit"):
        AdaptiveBatcher(model, max_batch_size=16, max_wait_ms=1, max_queue_size=64)
    with pytest.raises(ValueError, match="max_queue_size"):
        AdaptiveBatcher(model, max_batch_size=8, max_wait_ms=1, max_queue_size=4)
    with pytest.raises(ValueError, match="max_wait_ms"):
        AdaptiveBatcher(model, max_batch_size=8, max_wait_ms=-1, max_queue_size=64)
    not_started = AdaptiveBatcher(model, max_batch_size=8, max_wait_ms=1, max_queue_size=64)
    with pytest.raises(BatcherClosedError):
        await not_started.submit({"x": [1.0]})
    await not_started.close()
