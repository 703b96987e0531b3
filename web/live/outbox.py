"""One live client's outbox: what waits to be sent, conflated and throttled, without I/O.

The outbox never writes and never reads a clock. The connection that owns it (``Client``)
offers messages, writes what ``take`` returns, calls ``release`` at the time an ``offer`` asked
for, and closes the connection when ``overflowing`` says so. So every rule of delivery can be
tested as a table of calls and the frames they give, without a socket or an event loop.

The rules:

- Updates of a channel are sent in sequence order; one that a snapshot or a newer update already
  covered is dropped, and one that follows a skipped number is marked ``"conflated": true``.
- Past ``max_messages`` waiting, tick updates conflate: only the newest of a channel waits.
  Candle updates of one bucket always collapse into the newest.
- A channel with ``max_hz`` holds its updates back (the newest tick, the newest candle of each
  bucket) and lets them go at most ``max_hz`` times a second, all at once.
- Control messages (snapshot, subscribed, error, pong) are never conflated.
- ``overflowing``: more than ``max_bytes`` wait; the owner is to close the connection.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from web.live.config import Counters, Counts

# An entry: (channel, seq, message, is_control). Its key: (channel, kind, n) with kind UPDATE
# for one update (n = seq), TICK_SLOT for a channel's conflated tick, BUCKET for a candle bucket
# (n = start_ms) and CONTROL for a control message (n = a counter; channel "").
Entry = tuple[str, int, str, bool]
Key = tuple[str, int, int]
UPDATE, TICK_SLOT, BUCKET, CONTROL = 0, 1, 2, 3
CONFLATED_MARK = ',"conflated":true}'


@dataclass(slots=True)
class Throttle:
    """A channel's ``max_hz``: what it holds back and when that may go."""

    interval_s: float
    next_s: float = 0.0  # the earliest the next release may be
    due_s: float | None = None  # when what it holds is due; None: it holds nothing
    pending: OrderedDict[Key, Entry] = field(default_factory=OrderedDict)


class Outbox:
    """The messages waiting for one client, and the last sequence number sent per channel."""

    __slots__ = (
        "_controls",
        "bytes",
        "conflated",
        "counters",
        "max_bytes",
        "max_messages",
        "peak_bytes",
        "queue",
        "sent_seq",
        "throttles",
    )

    def __init__(
        self, *, max_messages: int, max_bytes: int, counters: Counters | None = None
    ) -> None:
        self.max_messages = max_messages  # waiting messages past which ticks conflate
        self.max_bytes = max_bytes  # waiting bytes past which the client is to be closed
        self.counters: Counters = counters if counters is not None else Counts()
        self.queue: OrderedDict[Key, Entry] = OrderedDict()
        self.sent_seq: dict[str, int] = {}
        self.throttles: dict[str, Throttle] = {}
        self.bytes = 0  # the size of what waits in ``queue``
        self.peak_bytes = 0
        self.conflated = 0
        self._controls = 0

    @property
    def overflowing(self) -> bool:
        return self.bytes > self.max_bytes

    # -- in --------------------------------------------------------------------------------

    def direct(self, channel: str, seq: int) -> bool:
        """Whether update ``seq`` of ``channel`` may be written at once, past the queue: nothing
        waits, the channel has no throttle, and it follows the last one sent. After writing it,
        call ``sent``."""
        if self.queue or channel in self.throttles:
            return False
        last = self.sent_seq.get(channel)
        return last is None or seq == last + 1

    def sent(self, channel: str, seq: int) -> None:
        """Updates of ``channel`` up to ``seq`` were written past the queue."""
        self.sent_seq[channel] = seq

    def offer(self, channel: str, seq: int, bucket: int | None, text: str) -> float | None:
        """Queue update ``seq`` of ``channel`` (``bucket``: a candle's start time, else None).

        Returns the time at which ``release`` is due when the update is held by the channel's
        throttle and nothing was held before (a time already passed means at once); else None.
        """
        throttle = self.throttles.get(channel)
        if bucket is None and throttle is None:
            queue = self.queue
            if len(queue) < self.max_messages:
                # the common case, kept short: one update of a client that keeps up
                queue[(channel, UPDATE, seq)] = (channel, seq, text, False)
                size = self.bytes = self.bytes + len(text)
                if size > self.peak_bytes:
                    self.peak_bytes = size
                return None
        key = (channel, BUCKET, bucket) if bucket is not None else (channel, TICK_SLOT, 0)
        entry = (channel, seq, text, False)
        if throttle is None:
            self._put(key, entry)
            return None
        if throttle.pending.pop(key, None) is not None:
            self._conflate()
        throttle.pending[key] = entry
        if throttle.due_s is not None:
            return None
        throttle.due_s = throttle.next_s
        return throttle.due_s

    def control(self, text: str, *, channel: str = "", seq: int = 0) -> None:
        """Queue a message that is never conflated; ``seq`` is what it tells of ``channel``
        (a snapshot's number: updates up to it are dropped, the next one follows it)."""
        self._controls += 1
        self._put(("", CONTROL, self._controls), (channel, seq, text, True))

    def replay(self, channel: str, missed: list[tuple[int, str]]) -> None:
        """Queue the updates a resuming client missed, in order, never conflated."""
        for seq, text in missed:
            self._put((channel, UPDATE, seq), (channel, seq, text, False))

    def set_rate(self, channel: str, max_hz: float | None) -> None:
        """Throttle ``channel`` to ``max_hz`` (None: not at all); what the old throttle held
        is queued."""
        old = self.throttles.pop(channel, None)
        if old is not None:
            for key, entry in old.pending.items():
                self._put(key, entry)
        if max_hz is not None:
            self.throttles[channel] = Throttle(interval_s=1.0 / max_hz)

    def forget(self, channel: str) -> None:
        """The client left ``channel``: its throttle goes; what is queued for it is still sent."""
        self.sent_seq.pop(channel, None)
        self.throttles.pop(channel, None)

    def release(self, now_s: float) -> float | None:
        """Queue what throttles hold that is due at ``now_s``; the next time one is due, if any."""
        following: float | None = None
        for throttle in self.throttles.values():
            due = throttle.due_s
            if due is None:
                continue
            if due > now_s:
                following = due if following is None else min(following, due)
                continue
            throttle.due_s = None
            throttle.next_s = now_s + throttle.interval_s
            for key, entry in throttle.pending.items():
                self._put(key, entry)
            throttle.pending.clear()
        return following

    # -- out -------------------------------------------------------------------------------

    def take(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` messages to write now, in order, as ``(text, channel)``; counted as
        sent. Empty while ``queue`` is not means that all it looked at were superseded."""
        batch: list[tuple[str, str]] = []
        queue, sent_seq = self.queue, self.sent_seq
        while queue and len(batch) < limit:
            _, (channel, seq, text, is_control) = queue.popitem(last=False)
            self.bytes -= len(text)
            if channel:
                last = sent_seq.get(channel)
                if not is_control and last is not None:
                    if seq <= last:
                        continue  # superseded by a snapshot or a newer value already sent
                    if seq != last + 1:
                        text = text[:-1] + CONFLATED_MARK
                sent_seq[channel] = seq
            batch.append((text, channel))
        return batch

    def clear(self) -> None:
        """Drop everything waiting or held (the client is being closed); counted as dropped."""
        self.counters.dropped += len(self.queue)
        self.queue.clear()
        self.bytes = 0
        self.throttles.clear()

    def _put(self, key: Key, entry: Entry) -> None:
        old = self.queue.pop(key, None)
        if old is not None:
            self.bytes -= len(old[2])
            self._conflate()
        self.queue[key] = entry
        self.bytes += len(entry[2])
        if self.bytes > self.peak_bytes:
            self.peak_bytes = self.bytes

    def _conflate(self) -> None:
        self.conflated += 1
        self.counters.conflated += 1
