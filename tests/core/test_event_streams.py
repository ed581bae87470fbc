"""Job event streams (`aiaas.core.event_streams`) against a real Redis: publishing, replay from a
cursor, the hand-over from replay to live without gap or duplicate, one source task per job
shared by its subscribers, the end of a subscription at a terminal state, cursor validation,
cutting off slow subscribers, expiry of finished streams, and surviving a dropped connection."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from hypothesis import example, given
from hypothesis import strategies as st
from redis.asyncio import Redis

from aiaas.core.errors import (
    InputError,
    RedisUnavailableError,
    ServiceUnavailableError,
    SubscriberTooSlowError,
)
from aiaas.core.event_streams import (
    FINISHED_STREAM_TTL_S,
    REPLAY_PAGE_SIZE,
    EventStreamRelay,
    is_terminal_event,
    job_stream_key,
    parse_cursor,
    publish_job_event,
    publish_job_events,
)
from support import free_port, poll_until

WAIT_S = 20
"""The bound on every wait: a bug fails the test instead of hanging it."""

MAX_ID_PART = 2**64 - 1

Events = AsyncIterator[tuple[str, dict[str, Any]]]


def progress(step: int, **extra: Any) -> dict[str, Any]:
    return {"type": "progress", "step": step, "metrics": {"loss": 1 / (step + 1)}, **extra}


def state(name: str) -> dict[str, Any]:
    return {"type": "state", "state": name}


async def take(events: Events, count: int) -> list[tuple[str, dict[str, Any]]]:
    taken = []
    async with asyncio.timeout(WAIT_S):
        while len(taken) < count:
            taken.append(await anext(events))
    return taken


async def drain(events: Events) -> list[tuple[str, dict[str, Any]]]:
    """Everything up to the end of the subscription."""
    async with asyncio.timeout(WAIT_S):
        return [item async for item in events]


def cursors_of(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [cursor for cursor, _ in items]


def source_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("job-events:") and not task.done()
    ]


@pytest.fixture(scope="module")
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    """A client made the way the platform makes it: arq's pool, bytes in replies."""
    client = await create_pool(RedisSettings.from_dsn(redis_url))
    yield client
    await client.aclose()


@pytest.fixture
async def make_relay(redis: ArqRedis) -> AsyncIterator[Callable[..., EventStreamRelay]]:
    relays: list[EventStreamRelay] = []

    def make(client: Redis | None = None, **options: Any) -> EventStreamRelay:
        relays.append(EventStreamRelay(client or redis, **options))
        return relays[-1]

    yield make
    for relay in relays:
        await relay.close()
    assert source_tasks() == []


@pytest.fixture
async def relay(make_relay: Callable[..., EventStreamRelay]) -> EventStreamRelay:
    return make_relay()


# Publishing and replay -------------------------------------------------------------------------


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_replay_from_the_start_and_from_a_cursor_keeps_values_and_order(
    redis_url: str, make_relay: Callable[..., EventStreamRelay], decode_responses: bool
) -> None:
    client = Redis.from_url(redis_url, decode_responses=decode_responses)
    relay = make_relay(client)
    job = uuid.uuid4()
    nested = progress(0, note=None, tags=["a", "b"], metrics={"loss": 0.5, "per_class": [1, 2]})
    sent = [nested, progress(1, run=job), progress(2), {"type": "checkpoint", "step": 2}]
    cursors = [await publish_job_event(client, job, sent[0])]
    cursors += await publish_job_events(client, job, sent[1:])

    async with aclosing(relay.subscribe(job, None)) as events:
        replayed = await take(events, 4)
    assert cursors_of(replayed) == cursors
    assert [event for _, event in replayed] == [
        nested,
        {**sent[1], "run": str(job)},  # what JSON cannot hold goes as its str()
        sent[2],
        sent[3],
    ]

    async with aclosing(relay.subscribe(job, cursors[1])) as events:
        assert cursors_of(await take(events, 2)) == cursors[2:]
    await client.aclose()


async def test_replay_crosses_page_boundaries(redis: ArqRedis, relay: EventStreamRelay) -> None:
    job = uuid.uuid4()
    count = 2 * REPLAY_PAGE_SIZE  # the last page is full: the replay must still end
    cursors = await publish_job_events(redis, job, [progress(step) for step in range(count)])
    cursors.append(await publish_job_event(redis, job, state("SUCCEEDED")))

    async with aclosing(relay.subscribe(job, None)) as events:
        assert cursors_of(await drain(events)) == cursors
    async with aclosing(relay.subscribe(job, cursors[REPLAY_PAGE_SIZE - 1])) as events:
        assert cursors_of(await drain(events)) == cursors[REPLAY_PAGE_SIZE:]


async def test_publishing_nothing_costs_nothing(redis: ArqRedis) -> None:
    job = uuid.uuid4()
    assert await publish_job_events(redis, job, []) == []
    assert await redis.exists(job_stream_key(job)) == 0


# Replay, then live ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_subscribers_joining_while_events_pour_in_miss_none_and_see_none_twice(
    redis: ArqRedis, make_relay: Callable[..., EventStreamRelay], seed: int
) -> None:
    total = 2000
    rng = random.Random(seed)
    relay = make_relay(queue_size=total + 10)  # this test is about gaps, not about cut-offs
    job = uuid.uuid4()
    published: list[str] = []

    async def watch(after: str | None) -> list[str]:
        async with aclosing(relay.subscribe(job, after)) as events:
            return cursors_of(await drain(events))

    join_at = sorted(rng.sample(range(total), 25))
    watchers: list[tuple[str | None, asyncio.Task[list[str]]]] = []
    async with asyncio.timeout(60):
        while len(published) < total:
            while join_at and join_at[0] <= len(published):
                join_at.pop(0)
                after = rng.choice([None, *published[-300:]])
                watchers.append((after, asyncio.create_task(watch(after))))
            size = min(rng.randint(1, 25), total - len(published))
            batch = [progress(len(published) + i) for i in range(size)]
            published += await publish_job_events(redis, job, batch)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)  # let subscribers run in between, at random points
        published.append(await publish_job_event(redis, job, state("SUCCEEDED")))
        results = await asyncio.gather(*(task for _, task in watchers))

    assert len(published) == len(set(published)) == total + 1
    for (after, _), received in zip(watchers, results, strict=True):
        start = 0 if after is None else published.index(after) + 1
        assert received == published[start:], f"subscriber after {after}"


async def test_many_subscribers_of_one_job_share_one_source_and_all_get_everything(
    redis: ArqRedis, relay: EventStreamRelay
) -> None:
    job = uuid.uuid4()
    received: list[list[str]] = [[] for _ in range(100)]

    caught_up = 0
    all_caught_up = asyncio.Event()

    async def watch(into: list[str]) -> None:
        nonlocal caught_up
        async with aclosing(relay.subscribe(job, None)) as events:
            async for cursor, _ in events:
                into.append(cursor)
                if len(into) == 50:
                    caught_up += 1
                    if caught_up == len(received):
                        all_caught_up.set()

    watchers = [asyncio.create_task(watch(into)) for into in received]
    cursors = await publish_job_events(redis, job, [progress(step) for step in range(50)])
    async with asyncio.timeout(WAIT_S):
        await all_caught_up.wait()
    # Every subscriber is live now, and all of them read through one source.
    assert relay.source_count == 1
    assert len(source_tasks()) == 1

    cursors += await publish_job_events(redis, job, [progress(50), state("FAILED")])
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(*watchers)
    assert all(into == cursors for into in received)
    assert relay.source_count == 0
    assert source_tasks() == []


async def test_the_source_stops_when_its_last_subscriber_leaves(
    redis: ArqRedis, relay: EventStreamRelay
) -> None:
    job = uuid.uuid4()
    await publish_job_event(redis, job, progress(0))
    first = relay.subscribe(job, None)
    second = relay.subscribe(job, None)
    await take(first, 1)
    await take(second, 1)
    assert relay.source_count == 1

    await first.aclose()
    assert relay.source_count == 1
    await second.aclose()
    assert relay.source_count == 0
    assert source_tasks() == []

    async with aclosing(relay.subscribe(job, None)) as third:
        await take(third, 1)
        assert relay.source_count == 1  # a new subscriber starts a new source
    assert relay.source_count == 0


async def test_two_jobs_see_only_their_own_events(redis: ArqRedis, relay: EventStreamRelay) -> None:
    jobs = [uuid.uuid4(), uuid.uuid4()]
    async with (
        aclosing(relay.subscribe(jobs[0], None)) as first,
        aclosing(relay.subscribe(jobs[1], None)) as second,
    ):
        for job in jobs:
            await publish_job_event(redis, job, progress(0, job=str(job)))
        got = [await take(first, 1), await take(second, 1)]
        assert relay.source_count == 2
        for step in range(1, 20):
            for job in jobs:
                await publish_job_event(redis, job, progress(step, job=str(job)))
        for job in jobs:
            await publish_job_event(redis, job, {**state("SUCCEEDED"), "job": str(job)})
        got[0] += await drain(first)
        got[1] += await drain(second)
    for job, events in zip(jobs, got, strict=True):
        assert len(events) == 21
        assert {event["job"] for _, event in events} == {str(job)}


# The end of a subscription ----------------------------------------------------------------------


async def test_a_terminal_state_ends_a_live_subscription(
    redis: ArqRedis, relay: EventStreamRelay
) -> None:
    job = uuid.uuid4()
    await publish_job_event(redis, job, state("QUEUED"))
    async with aclosing(relay.subscribe(job, None)) as events:
        await take(events, 1)
        # Published while the subscriber is past its replay: these come live.
        await publish_job_events(
            redis, job, [state("RUNNING"), progress(1), state("CANCELLED"), progress(2)]
        )
        rest = await drain(events)
    assert [event for _, event in rest] == [state("RUNNING"), progress(1), state("CANCELLED")]
    assert relay.source_count == 0


@pytest.mark.parametrize("final", ["SUCCEEDED", "FAILED", "CANCELLED"])
async def test_a_finished_job_replays_and_ends(
    redis: ArqRedis, relay: EventStreamRelay, final: str
) -> None:
    job = uuid.uuid4()
    cursors = await publish_job_events(
        redis, job, [state("RUNNING"), progress(0), {"type": "resumed", "step": 0}, state(final)]
    )
    async with aclosing(relay.subscribe(job, None)) as events:
        assert cursors_of(await drain(events)) == cursors
    async with aclosing(relay.subscribe(job, cursors[1])) as events:
        assert cursors_of(await drain(events)) == cursors[2:]
    assert relay.source_count == 0


def test_only_a_final_state_is_terminal() -> None:
    assert is_terminal_event(state("SUCCEEDED"))
    assert not is_terminal_event(state("RUNNING"))
    assert not is_terminal_event({"type": "progress", "state": "FAILED"})
    assert not is_terminal_event({"type": "state"})


async def test_a_finished_stream_expires(redis: ArqRedis) -> None:
    job = uuid.uuid4()
    key = job_stream_key(job)
    await publish_job_event(redis, job, state("RUNNING"))
    await publish_job_events(redis, job, [progress(0), progress(1)])
    assert await redis.ttl(key) == -1  # a running job's stream must not vanish under it
    await publish_job_event(redis, job, state("SUCCEEDED"))
    assert 0 < await redis.ttl(key) <= FINISHED_STREAM_TTL_S

    batched = uuid.uuid4()
    await publish_job_events(redis, batched, [progress(0), state("FAILED")])
    assert 0 < await redis.ttl(job_stream_key(batched)) <= FINISHED_STREAM_TTL_S


# Cursors ----------------------------------------------------------------------------------------


def reference_cursor(text: str) -> str | None:
    """What `parse_cursor` should make of `text`, worked out another way: None if invalid."""
    milliseconds, dash, sequence = text.partition("-")
    parts = (milliseconds, sequence)
    if not dash or not all(part.isascii() and part.isdigit() and len(part) <= 20 for part in parts):
        return None
    if any(int(part) > MAX_ID_PART for part in parts):
        return None
    return f"{int(milliseconds)}-{int(sequence)}"


@given(st.one_of(st.text(), st.from_regex(r"[0-9]{1,22}-[0-9]{1,22}", fullmatch=True)))
@example("")
@example("1-2-3")
@example("1-")
@example("-1")
@example("1")
@example(" 1-2")
@example("1-2\n")
@example("\u0661-\u0662")  # Arabic-Indic digits: `\d` would take them, Redis would not
@example("+1-2")
@example("$")
@example("+")
@example("(1-2")
@example("007-0")
@example(f"{MAX_ID_PART}-{MAX_ID_PART}")
@example(f"{MAX_ID_PART + 1}-0")
@example(f"0-{MAX_ID_PART + 1}")
@example("1" * 5000 + "-0")
def test_a_cursor_is_a_stream_id_or_an_input_error(text: str) -> None:
    expected = reference_cursor(text)
    if expected is not None:
        assert parse_cursor(text) == expected
        return
    with pytest.raises(InputError) as raised:
        parse_cursor(text)
    assert set(raised.value.field_errors) == {"after"}


@given(st.integers(0, MAX_ID_PART), st.integers(0, MAX_ID_PART))
def test_every_stream_id_is_a_cursor(milliseconds: int, sequence: int) -> None:
    assert parse_cursor(f"{milliseconds}-{sequence}") == f"{milliseconds}-{sequence}"


def test_no_cursor_means_from_the_start() -> None:
    assert parse_cursor(None) == "0-0"


@pytest.mark.parametrize("cursor", ["", "$", "x-1", "1-2-3", f"{MAX_ID_PART + 1}-0"])
async def test_an_invalid_cursor_fails_before_anything_starts(
    relay: EventStreamRelay, cursor: str
) -> None:
    with pytest.raises(InputError):
        await anext(relay.subscribe(uuid.uuid4(), cursor))
    assert relay.source_count == 0


async def test_cursors_at_the_edges_of_the_id_space(
    redis: ArqRedis, relay: EventStreamRelay
) -> None:
    job = uuid.uuid4()
    cursors = await publish_job_events(redis, job, [progress(0), state("SUCCEEDED")])
    async with aclosing(relay.subscribe(job, "0-0")) as events:
        assert cursors_of(await drain(events)) == cursors
    # The id after this one is 6-0: every real id (a timestamp in ms) follows it.
    async with aclosing(relay.subscribe(job, f"5-{MAX_ID_PART}")) as events:
        assert cursors_of(await drain(events)) == cursors
    # Nothing follows the largest id: no error, nothing replayed, nothing live.
    async with aclosing(relay.subscribe(job, f"{MAX_ID_PART}-{MAX_ID_PART}")) as events:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await anext(events)


# Slow subscribers and failures ------------------------------------------------------------------


async def test_a_slow_subscriber_is_cut_off_and_the_others_carry_on(
    redis: ArqRedis, make_relay: Callable[..., EventStreamRelay]
) -> None:
    relay = make_relay(queue_size=10)
    job = uuid.uuid4()
    first = await publish_job_event(redis, job, progress(0))
    fast_received: list[str] = []
    fast_is_live = asyncio.Event()
    fast_has_all = asyncio.Event()

    async def follow_fast() -> None:
        async with aclosing(relay.subscribe(job, None)) as fast:
            async for cursor, _ in fast:
                fast_received.append(cursor)
                fast_is_live.set()
                if len(fast_received) == 51:
                    fast_has_all.set()

    async with aclosing(relay.subscribe(job, None)) as slow:
        await take(slow, 1)
        fast = asyncio.create_task(follow_fast())
        async with asyncio.timeout(WAIT_S):
            await fast_is_live.wait()
        # Five times what a queue holds, in one burst: only the one that reads nothing falls off.
        later = await publish_job_events(redis, job, [progress(step) for step in range(1, 51)])
        async with asyncio.timeout(WAIT_S):
            await fast_has_all.wait()
        # The fast one has them all, so the source has offered them all to the slow one too.
        with pytest.raises(SubscriberTooSlowError):
            await drain(slow)
    assert relay.source_count == 1
    final = await publish_job_event(redis, job, state("SUCCEEDED"))
    async with asyncio.timeout(WAIT_S):
        await fast
    assert fast_received == [first, *later, final]
    async with aclosing(relay.subscribe(job, None)) as again:  # it may resubscribe
        assert cursors_of(await drain(again)) == [first, *later, final]


async def test_a_source_whose_connection_drops_resumes_where_it_was(
    redis_url: str,
    redis: ArqRedis,
    make_relay: Callable[..., EventStreamRelay],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"job-events-test-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url, client_name=name)
    relay = make_relay(client, block_ms=30_000)
    job = uuid.uuid4()

    readers: list[str] = []

    async def source_blocks_in_xread() -> bool:
        readers[:] = [
            connection["id"]
            for connection in await redis.client_list()
            if connection["name"] == name and connection["cmd"] == "xread"
        ]
        return len(readers) == 1

    async with aclosing(relay.subscribe(job, None)) as events:
        before = await publish_job_events(redis, job, [progress(step) for step in range(10)])
        received = await take(events, 10)
        assert await poll_until(source_blocks_in_xread, WAIT_S) is not None
        (reader,) = readers
        with caplog.at_level(logging.WARNING, logger="aiaas.core.event_streams"):
            assert await redis.client_kill_filter(_id=reader) == 1
            after = await publish_job_events(redis, job, [progress(10), state("SUCCEEDED")])
            received += await drain(events)
    assert cursors_of(received) == before + after
    assert "retry in" in caplog.text
    await client.aclose()


async def test_an_unreachable_redis_fails_subscribers_instead_of_hanging_them(
    make_relay: Callable[..., EventStreamRelay],
) -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    relay = make_relay(client, retry_delays_s=(0.01, 0.02))
    with pytest.raises(RedisUnavailableError):
        async with asyncio.timeout(WAIT_S):
            await anext(relay.subscribe(uuid.uuid4(), None))
    assert relay.source_count == 0
    await client.aclose()


async def test_closing_the_relay_ends_its_subscribers(redis: ArqRedis) -> None:
    relay = EventStreamRelay(redis)
    job = uuid.uuid4()
    await publish_job_event(redis, job, progress(0))
    events = relay.subscribe(job, None)
    await take(events, 1)
    waiting = asyncio.create_task(take(events, 1))
    await asyncio.sleep(0)
    await relay.close()
    with pytest.raises(ServiceUnavailableError) as raised:
        async with asyncio.timeout(WAIT_S):
            await waiting
    assert raised.type is ServiceUnavailableError
    assert relay.source_count == 0
    assert source_tasks() == []
    with pytest.raises(ServiceUnavailableError):
        await anext(relay.subscribe(job, None))
