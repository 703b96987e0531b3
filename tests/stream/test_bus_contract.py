"""The bus contract: one suite, run against every bus adapter (the memory bus and Kafka).

Where the adapters legitimately differ the test says so through ``Case``: the memory bus has one
partition and no durable positions, and never splits a group's queue between members.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from stream.bus.kafka import KafkaBus, KafkaOptions, TopicSpec
from stream.bus.memory import MemoryBus
from stream.contract import Bus, Consumer, Record
from tests.services.kafka import KafkaBroker

#: How long a condition may take to hold: a Kafka group join takes about 5 s.
WAIT_S = 30.0


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = WAIT_S,
                     *, what: str = "the condition") -> None:  # fmt: skip
    """Return once ``check()`` holds (it may be async, e.g. poll a consumer); fail after
    ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.01)


async def read_until(consumer: Consumer, done: Callable[[list[Record]], bool],
                     *, timeout_s: float = WAIT_S) -> list[Record]:  # fmt: skip
    """Poll a few records at a time until ``done(read)``; fail after ``timeout_s``."""
    out: list[Record] = []

    async def check() -> bool:
        if done(out):
            return True
        out.extend(await consumer.poll(max_records=7, timeout_ms=100))
        return done(out)

    await eventually(check, timeout_s, what="reading")
    return out


async def ready(*consumers: Consumer) -> None:
    """Poll until each consumer holds its partitions and knows their ends (lag not None): a
    group member has joined, a fan-out consumer knows where the end is. Nothing is read."""

    async def check() -> bool:
        for c in consumers:
            if c.lag() is None:
                assert await c.poll(max_records=100, timeout_ms=100) == []
        return all(c.lag() is not None for c in consumers)

    await eventually(check, what="consumers ready")


def kafka_options(broker: KafkaBroker, *, partitions: int = 3,
                  partition_map: dict[str, int] | None = None) -> KafkaOptions:  # fmt: skip
    """Options for a bus whose topic ``t`` is new to the broker (a unique name)."""
    suffix = uuid.uuid4().hex[:8]
    topics = {"t": TopicSpec(f"t-{suffix}", partitions, 3_600_000)}
    return KafkaOptions(bootstrap=broker.bootstrap, client_id=f"test-{suffix}", topics=topics,
                        partition_map=dict(partition_map or {}))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Case:
    bus: Bus
    #: Partitions of topic ``t``: the memory bus keeps one queue per group, as partition 0.
    partitions: int
    #: Whether positions survive (``Consumer.durable`` of a group member).
    durable: bool
    #: Whether a group's partitions move between members (then ``on_revoke`` is called).
    splits_groups: bool


@pytest.fixture(params=["memory", "kafka"])
def broker(request: pytest.FixtureRequest) -> KafkaBroker | None:
    """The Kafka broker for the "kafka" case (a session fixture: got outside the event loop)."""
    if request.param == "memory":
        return None
    server: KafkaBroker = request.getfixturevalue("kafka_broker")
    return server


@pytest.fixture
async def case(broker: KafkaBroker | None) -> AsyncIterator[Case]:
    if broker is None:
        memory = MemoryBus()
        yield Case(memory, partitions=1, durable=False, splits_groups=False)
        await memory.close()
        return
    kafka = KafkaBus(kafka_options(broker, partitions=3))
    await kafka.start(timeout_s=30)
    yield Case(kafka, partitions=3, durable=True, splits_groups=True)
    await kafka.close()


def numbered(n: int, *, keys: int = 4) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % keys}".encode(), str(i).encode()) for i in range(n)]


async def test_a_group_gets_each_record_in_key_order_and_each_fanout_consumer_gets_all(
    case: Case,
) -> None:
    member = await case.bus.consumer("t", group="g")
    watchers = [await case.bus.consumer("t", group=None) for _ in range(2)]
    await ready(member, *watchers)
    assert member.durable is case.durable
    assert not any(w.durable for w in watchers)
    producer = await case.bus.producer()
    items = numbered(40)
    await producer.send_many("t", items[:30])
    for key, value in items[30:]:
        await producer.send("t", value, key=key)
    await producer.flush()
    got = await read_until(member, lambda got: len(got) >= 40)
    assert sorted(int(r.value) for r in got) == list(range(40))
    for key in {k for k, _ in items}:
        mine = [r for r in got if r.key == key]
        assert len({r.partition for r in mine}) == 1
        assert [r.value for r in mine] == [v for k, v in items if k == key]
        assert [r.offset for r in mine] == sorted(r.offset for r in mine)
    assert {r.partition for r in got} <= set(range(case.partitions))
    for watcher in watchers:
        seen = await read_until(watcher, lambda got: len(got) >= 40)
        assert sorted(int(r.value) for r in seen) == list(range(40))


async def test_a_fanout_consumer_starts_at_the_end_and_lags_by_what_came_after(
    case: Case,
) -> None:
    producer = await case.bus.producer()
    await producer.send_many("t", [(b"old", b"before")] * 5)
    await producer.flush()
    watcher = await case.bus.consumer("t", group=None)
    await ready(watcher)
    assert watcher.lag() == 0  # it reads from the end: the 5 older records are not its lag
    await producer.send_many("t", numbered(30))
    await producer.flush()
    read = await read_until(watcher, lambda got: len(got) >= 10 and watcher.lag() == 30 - len(got))
    assert watcher.lag() == 30 - len(read)
    read += await read_until(watcher, lambda got: len(read) + len(got) >= 30)
    assert sorted(int(r.value) for r in read) == list(range(30))
    assert watcher.lag() == 0
    await watcher.close()


async def test_a_member_lags_by_what_waits_to_be_read_and_a_commit_does_not_change_that(
    case: Case,
) -> None:
    member = await case.bus.consumer("t", group="lag")
    await ready(member)
    assert member.lag() == 0
    producer = await case.bus.producer()
    await producer.send_many("t", numbered(60))
    await producer.flush()
    # Known once the fetches have brought the new ends: then it is what is left unread.
    read = await read_until(member, lambda got: len(got) > 0 and member.lag() == 60 - len(got))
    assert 0 < len(read) < 60
    read += await read_until(member, lambda got: len(read) + len(got) >= 60)
    assert len(read) == 60
    assert member.lag() == 0
    await member.commit()
    assert member.lag() == 0  # a commit does not change what waits to be read
    await producer.send_many("t", numbered(15))
    await producer.flush()
    more = await read_until(member, lambda got: member.lag() == 15 - len(got))
    assert member.lag() == 15 - len(more)


async def test_the_next_member_of_a_group_resumes_after_the_last_commit_when_durable(
    case: Case,
) -> None:
    producer = await case.bus.producer()
    first = await case.bus.consumer("t", group="resume")
    await ready(first)
    await producer.send_many("t", numbered(10, keys=1))
    await producer.flush()
    got = await read_until(first, lambda got: len(got) >= 10)
    assert [int(r.value) for r in got] == list(range(10))
    await first.commit()
    await producer.send_many("t", [(b"k0", str(i).encode()) for i in range(10, 15)])
    await producer.flush()
    assert len(await read_until(first, lambda got: len(got) >= 5)) == 5  # never committed
    await first.close()
    second = await case.bus.consumer("t", group="resume")
    # Read to the end of what the group has: with durable positions, from the last commit;
    # without (the memory bus), from where the group's reads stopped: nothing is read twice.
    again = await read_until(second, lambda _: second.lag() == 0)
    assert [int(r.value) for r in again] == (list(range(10, 15)) if case.durable else [])
    await producer.send_many("t", [(b"k0", b"15")])
    await producer.flush()
    assert [r.value for r in await read_until(second, lambda got: len(got) >= 1)] == [b"15"]


async def test_a_member_commits_in_on_revoke_so_a_new_member_reads_nothing_twice(
    case: Case,
) -> None:
    revoked: list[frozenset[int]] = []
    holder: list[Consumer] = []

    async def on_revoke(parts: frozenset[int]) -> None:
        revoked.append(parts)
        await holder[0].commit()

    first = await case.bus.consumer("t", group="rebal", on_revoke=on_revoke)
    holder.append(first)
    await ready(first)
    producer = await case.bus.producer()
    await producer.send_many("t", numbered(60))
    await producer.flush()
    assert len(await read_until(first, lambda got: len(got) >= 60)) == 60  # not committed
    second = await case.bus.consumer("t", group="rebal")
    late: list[Record] = []

    async def settled() -> bool:
        # Both keep polling, so both take part in the rebalance.
        late.extend(await first.poll(max_records=100, timeout_ms=100))
        late.extend(await second.poll(max_records=100, timeout_ms=100))
        return (bool(revoked) or not case.splits_groups) and second.lag() == 0

    await eventually(settled, what="the rebalance")
    # Kafka moves partitions and calls on_revoke with all the first member held; the memory
    # bus never splits a group's queue, so never calls it.
    assert revoked == ([frozenset(range(case.partitions))] if case.splits_groups else [])
    assert late == []  # the second member caught up without re-reading a record
    await producer.send_many("t", numbered(20))
    await producer.flush()
    reads: list[Record] = []

    async def all_read() -> bool:
        for member in (first, second):
            reads.extend(await member.poll(max_records=100, timeout_ms=50))
        return len(reads) >= 20

    await eventually(all_read, what="reading the new records")
    assert sorted(int(r.value) for r in reads) == list(range(20))  # each by one member
