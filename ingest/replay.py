"""File replay: recorded ticks (JSON lines or CSV) published as fast as possible or paced.

With ``speed`` 0 the file is published as fast as the bus takes it, in batches of ``batch``
lines; with ``speed`` 1 at the pace of the ticks' own times, 10 ten times faster, and so on.
A paced tick's receipt time is when it is released, so the composite judges staleness as it
would for a live feed, however long a batch takes to pace out.
Every line goes through the feed like a vendor message, so a bad line is dead-lettered with its
reason and bytes. ``progress(done_bytes, total_bytes)`` is called after each batch (the command
line draws a progress bar with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from ingest.feed import Feed
from ingest.vendors.base import ParseFn
from ingest.vendors.tickfile import csv_header, make_csv_parse, parse_jsonl
from stream.contract import DeadLetter, Tick

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def file_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


class ReplayCollector:
    def __init__(
        self,
        feed: Feed,
        *,
        path: Path,
        speed: float = 1.0,
        fmt: str = "auto",
        batch: int = 1_000,
        progress: Progress | None = None,
        clock_s: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.feed = feed
        self.path = path
        self.speed = speed
        self.fmt = file_format(path, fmt)
        self.batch = batch
        self.progress = progress
        self.clock_s = clock_s  # the pacing clock, in seconds (monotonic)
        self.sleep = sleep
        self.done = asyncio.Event()

    async def run(self) -> None:
        feed = self.feed
        total = self.path.stat().st_size
        started = self.clock_s()
        first_ts: int | None = None
        feed.connected(True)
        try:
            with self.path.open("rb") as f:
                parse: ParseFn = parse_jsonl
                if self.fmt == "csv":
                    parse = make_csv_parse(csv_header(f.readline()))
                feed.parse = parse
                done = f.tell()
                while True:
                    lines = f.readlines(self.batch * 64)  # about ``batch`` lines of ~64 bytes
                    if not lines:
                        break
                    for chunk in _chunks(lines, self.batch):
                        raws = [line.strip() for line in chunk if line.strip()]
                        good, letters = feed.take_many(raws, feed.clock_ms())
                        if self.speed > 0 and good:
                            if first_ts is None:
                                first_ts = good[0].ts_ms
                            await self._pace(good, letters, first_ts, started)
                        else:
                            await feed.publisher.send(good, letters)
                            await asyncio.sleep(0)
                        done += sum(len(line) for line in chunk)
                        if self.progress is not None:
                            self.progress(done, total)
        finally:
            feed.connected(False)
            self.done.set()
        log.info(
            "%s: replayed %s: %d lines, %d published, %d rejected",
            feed.name, self.path, feed.stats.messages, feed.stats.published,
            sum(feed.stats.rejects.values()),
        )  # fmt: skip

    async def _pace(
        self, good: list[Tick], letters: list[DeadLetter], first_ts: int, started: float
    ) -> None:
        """Send ``good`` at the pace of their own times, each stamped as received when it is
        released, as a live feed's would be: a batch that takes minutes to pace out is
        minutes of receipts, not one."""
        feed = self.feed
        send = feed.publisher.send
        if letters:
            await send([], letters)
        i = 0
        while i < len(good):
            due = started + (good[i].ts_ms - first_ts) / 1000 / self.speed
            wait = due - self.clock_s()
            if wait > 0:
                await self.sleep(wait)
            j = i + 1
            now = self.clock_s()
            while j < len(good) and started + (good[j].ts_ms - first_ts) / 1000 / self.speed <= now:
                j += 1
            recv_ms = feed.clock_ms()
            feed.stats.last_message_ms = recv_ms
            await send([msgspec.structs.replace(t, recv_ms=recv_ms) for t in good[i:j]])
            i = j


def _chunks(lines: list[bytes], n: int) -> list[list[bytes]]:
    return [lines[i : i + n] for i in range(0, len(lines), n)]
