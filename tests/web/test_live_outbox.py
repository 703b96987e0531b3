"""The outbox's rules of delivery as tables of calls and the frames they give: no socket, no loop.

A step is a call on the outbox and what it gave, written as short strings: ``"t 3"`` is update 3
of channel ``t`` as written, ``"t 3 conflated"`` the same marked as following a gap,
``"snap t 5"`` a control message that tells channel ``t`` is at 5, ``"due 0.5"`` an offer or a
release that asks to be released at 0.5 s.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from web.live.config import Counts
from web.live.outbox import Outbox

Step = Callable[[Outbox], list[str]]


def _update(channel: str, seq: int) -> str:
    return orjson.dumps({"type": "update", "channel": channel, "seq": seq}).decode()


def offer(channel: str, *seqs: int, bucket: int | None = None) -> Step:
    def step(box: Outbox) -> list[str]:
        dues = [box.offer(channel, seq, bucket, _update(channel, seq)) for seq in seqs]
        return [f"due {due:g}" for due in dues if due is not None]

    return step


def snapshot(channel: str, seq: int) -> Step:
    def step(box: Outbox) -> list[str]:
        text = orjson.dumps({"type": "snapshot", "channel": channel, "seq": seq}).decode()
        box.control(text, channel=channel, seq=seq)
        return []

    return step


def error(code: str) -> Step:
    def step(box: Outbox) -> list[str]:
        box.control(orjson.dumps({"type": "error", "code": code}).decode())
        return []

    return step


def replay(channel: str, *seqs: int) -> Step:
    def step(box: Outbox) -> list[str]:
        box.replay(channel, [(seq, _update(channel, seq)) for seq in seqs])
        return []

    return step


def rate(channel: str, max_hz: float | None) -> Step:
    def step(box: Outbox) -> list[str]:
        box.set_rate(channel, max_hz)
        return []

    return step


def release(now_s: float) -> Step:
    def step(box: Outbox) -> list[str]:
        following = box.release(now_s)
        return [] if following is None else [f"due {following:g}"]

    return step


def forget(channel: str) -> Step:
    def step(box: Outbox) -> list[str]:
        box.forget(channel)
        return []

    return step


def take(limit: int = 100) -> Step:
    def step(box: Outbox) -> list[str]:
        frames = []
        for text, _ in box.take(limit):
            msg = orjson.loads(text)
            if msg["type"] == "update":
                mark = " conflated" if msg.get("conflated") else ""
                frames.append(f"{msg['channel']} {msg['seq']}{mark}")
            elif msg["type"] == "snapshot":
                frames.append(f"snap {msg['channel']} {msg['seq']}")
            else:
                frames.append(f"{msg['type']} {msg['code']}")
        return frames

    return step


# fmt: off
CASES: list[tuple[str, int, list[Step], list[str]]] = [
    # (what, max_messages, steps, what they gave in order)
    ("updates go in order", 10, [offer("t", 1, 2, 3), take()], ["t 1", "t 2", "t 3"]),
    ("take writes at most its limit", 10, [offer("t", 1, 2, 3), take(2), take(2)],
     ["t 1", "t 2", "t 3"]),
    ("a gap is marked", 10, [offer("t", 1, 3), take()], ["t 1", "t 3 conflated"]),
    ("past max_messages a channel's ticks wait as its newest only", 2,
     [offer("t", 1, 2, 3, 4, 5), take()], ["t 1", "t 2", "t 5 conflated"]),
    ("each channel keeps its own newest", 1,
     [offer("t", 1), offer("u", 1, 2), offer("t", 2, 3), take()],
     ["t 1", "u 2", "t 3 conflated"]),
    ("a candle bucket collapses into its newest, at any length", 10,
     [snapshot("c", 0), offer("c", 1, 2, bucket=60), offer("c", 3, bucket=120), take()],
     ["snap c 0", "c 2 conflated", "c 3"]),
    ("a snapshot covers the updates up to its number", 10,
     [snapshot("t", 5), offer("t", 4, 5, 6), take()], ["snap t 5", "t 6"]),
    ("updates queued before a snapshot go first", 10,
     [offer("t", 1, 2), snapshot("t", 7), offer("t", 8), take()],
     ["t 1", "t 2", "snap t 7", "t 8"]),
    ("control messages never conflate", 1,
     [error("a"), error("a"), error("b"), take()], ["error a", "error a", "error b"]),
    ("a replay is never conflated, however long", 1,
     [snapshot("t", 3), replay("t", 4, 5, 6), offer("t", 7), take()],
     ["snap t 3", "t 4", "t 5", "t 6", "t 7"]),
    ("a throttle holds the newest tick until it is due", 10,
     [rate("t", 2.0), offer("t", 1), offer("t", 2, 3), take(), release(0.0), take()],
     ["due 0", "t 3"]),
    ("then it lets go at most max_hz times a second", 10,
     [rate("t", 2.0), snapshot("t", 0), offer("t", 1), release(10.0), take(),
      offer("t", 2), offer("t", 3), release(10.2), take(), release(10.5), take()],
     ["due 0", "snap t 0", "t 1", "due 10.5", "due 10.5", "t 3 conflated"]),
    ("a throttle keeps the newest candle of each bucket", 10,
     [rate("c", 1.0), offer("c", 1, 2, bucket=60), offer("c", 3, bucket=120), release(0.0),
      take()],
     ["due 0", "c 2", "c 3"]),
    ("a throttled channel does not hold up the others", 10,
     [rate("t", 1.0), offer("t", 1), offer("u", 1), take(), release(0.0), take()],
     ["due 0", "u 1", "t 1"]),
    ("lifting a throttle queues what it held", 10,
     [rate("t", 1.0), offer("t", 1, 2), rate("t", None), take()], ["due 0", "t 2"]),
    ("forgetting a channel drops its throttle and what it held", 10,
     [rate("t", 1.0), offer("t", 1), forget("t"), release(5.0), take(), offer("t", 9), take()],
     ["due 0", "t 9"]),
    ("forgetting a channel starts its numbering afresh", 10,
     [offer("t", 1), take(), forget("t"), snapshot("t", 40), offer("t", 41), take()],
     ["t 1", "snap t 40", "t 41"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("max_messages", "steps", "gave"),
    [pytest.param(m, steps, gave, id=what) for what, m, steps, gave in CASES],
)
def test_outbox(max_messages: int, steps: list[Step], gave: list[str]) -> None:
    box = Outbox(max_messages=max_messages, max_bytes=1_000_000)
    assert [out for step in steps for out in step(box)] == gave
    assert (box.queue, box.bytes) == ({}, 0)  # everything taken, and its size with it


def test_conflation_is_counted_on_the_client_and_the_process() -> None:
    counts = Counts()
    box = Outbox(max_messages=1, max_bytes=1_000_000, counters=counts)
    for step in (offer("t", 1, 2, 3, 4), offer("c", 1, 2, bucket=60), take()):
        step(box)
    assert (box.conflated, counts.conflated) == (3, 3)  # t 3 by t 4, c 1 by c 2
    assert box.peak_bytes == sum(len(_update(*m)) for m in [("t", 1), ("t", 3), ("c", 1)])


@pytest.mark.parametrize(
    ("channel", "seq", "before", "direct"),
    [
        ("t", 1, [], True),  # nothing sent, nothing waits
        ("t", 2, [offer("t", 1), take()], True),  # follows the last sent
        ("t", 3, [offer("t", 1), take()], False),  # a gap: it goes through the queue
        ("t", 1, [offer("u", 1)], False),  # something waits: it goes after it
        ("t", 1, [rate("t", 5.0)], False),  # the channel is throttled
        ("t", 1, [rate("u", 5.0), offer("u", 1)], True),  # another channel's throttle holds
        ("t", 5, [snapshot("t", 4), take()], True),  # follows the snapshot
    ],
)
def test_direct_writes(channel: str, seq: int, before: list[Step], direct: bool) -> None:
    box = Outbox(max_messages=10, max_bytes=1_000_000)
    for step in before:
        step(box)
    assert box.direct(channel, seq) is direct


def test_past_max_bytes_it_overflows_and_clearing_frees_it_all_as_dropped() -> None:
    counts = Counts()
    one = len(_update("t", 1))
    box = Outbox(max_messages=1_000, max_bytes=3 * one, counters=counts)
    offer("t", 1, 2, 3)(box)
    assert not box.overflowing
    offer("t", 4)(box)
    assert box.overflowing
    rate("u", 1.0)(box)
    offer("u", 1)(box)
    box.clear()
    assert (box.queue, box.bytes, box.throttles, counts.dropped) == ({}, 0, {}, 4)
