"""HTTP collectors: polling with conditional requests, and newline-delimited JSON streams.

``PollCollector`` requests each of the profile's URLs every ``interval_ms``, sending the last
``ETag`` as ``If-None-Match`` and the last ``Last-Modified`` as ``If-Modified-Since``; a
``304 Not Modified`` is a sign of life without a message. A ``429`` (or ``503``) waits what its
``Retry-After`` says (seconds or an HTTP date), at least the next backoff step; other failures
(timeouts, refused connections, error statuses) back off exponentially with jitter.

``StreamCollector`` holds one long GET whose body is one JSON message per line (the OANDA v20
pricing stream), taking whatever lines have arrived at once and publishing them in one batch.
A read silent for ``stale_after_ms`` (OANDA sends a heartbeat line every five seconds) ends the
response and reconnects, as does the end of the body or any error, after the same backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging

import aiohttp

from ingest.collector import Backoff
from ingest.feed import Feed

log = logging.getLogger(__name__)

_FAILURES = (aiohttp.ClientError, OSError, TimeoutError, ValueError)
MAX_LINE = 1 << 20  # a streamed line longer than this is dead-lettered as it stands


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """The wait a ``Retry-After`` header asks for, in ms; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int(when.timestamp() * 1000) - now_ms)


class PollCollector:
    def __init__(
        self,
        feed: Feed,
        *,
        urls: list[str],
        headers: dict[str, str] | None = None,
        interval_ms: int = 1_000,
        timeout_ms: int = 10_000,
        backoff: Backoff,
    ) -> None:
        self.feed = feed
        self.urls = urls
        self.headers = headers or {}
        self.interval_ms = interval_ms
        self.timeout_ms = timeout_ms
        self.backoff = backoff
        self.etags: dict[str, str] = {}
        self.modified: dict[str, str] = {}

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_ms / 1000)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            while True:
                wait_ms = self.interval_ms
                for url in self.urls:
                    pause = await self._poll(session, url)
                    if pause is not None:
                        wait_ms = max(wait_ms, pause)
                        break
                await asyncio.sleep(wait_ms / 1000)

    async def _poll(self, session: aiohttp.ClientSession, url: str) -> int | None:
        """Request ``url`` once; how long to wait before the next round when it failed."""
        headers = {}
        if url in self.etags:
            headers["If-None-Match"] = self.etags[url]
        if url in self.modified:
            headers["If-Modified-Since"] = self.modified[url]
        feed = self.feed
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    feed.alive()
                    feed.connected(True)
                    self.backoff.reset()
                    return None
                body = await resp.read()
                if resp.status == 200:
                    feed.connected(True)
                    self.backoff.reset()
                    if etag := resp.headers.get("ETag"):
                        self.etags[url] = etag
                    if modified := resp.headers.get("Last-Modified"):
                        self.modified[url] = modified
                    await feed.receive(body)
                    return None
                feed.connected(False)
                feed.failed(f"HTTP {resp.status} from {url}: {body[:200]!r}")
                asked = retry_after_ms(resp.headers.get("Retry-After"), feed.clock_ms())
                step = self.backoff.next_ms()
                return max(step, asked) if asked is not None else step
        except _FAILURES as exc:
            feed.connected(False)
            feed.failed(f"request to {url}: {type(exc).__name__}: {exc}")
            return self.backoff.next_ms()


class StreamCollector:
    def __init__(
        self,
        feed: Feed,
        *,
        url: str,
        headers: dict[str, str] | None = None,
        timeout_ms: int = 10_000,
        stale_after_ms: int = 10_000,
        backoff: Backoff,
    ) -> None:
        self.feed = feed
        self.url = url
        self.headers = headers or {}
        self.timeout_ms = timeout_ms
        self.stale_after_ms = stale_after_ms
        self.backoff = backoff

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeout_ms / 1000, sock_read=self.stale_after_ms / 1000
        )
        async with aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session:
            while True:
                self._asked_ms: int | None = None
                try:
                    await self._stream(session)
                except _FAILURES as exc:
                    self.feed.failed(f"stream {self.url}: {type(exc).__name__}: {exc}")
                finally:
                    self.feed.connected(False)
                delay_ms = self.backoff.next_ms()
                if self._asked_ms is not None:
                    delay_ms = max(delay_ms, self._asked_ms)
                self.feed.stats.reconnects += 1
                log.info("%s: reconnecting in %d ms", self.feed.name, delay_ms)
                await asyncio.sleep(delay_ms / 1000)

    async def _stream(self, session: aiohttp.ClientSession) -> None:
        feed = self.feed
        async with session.get(self.url) as resp:
            if resp.status != 200:
                body = await resp.content.read(500)
                feed.failed(f"HTTP {resp.status} from {self.url}: {body[:200]!r}")
                self._asked_ms = retry_after_ms(resp.headers.get("Retry-After"), feed.clock_ms())
                return
            feed.connected(True)
            receive_many = feed.receive_many
            rest = b""
            async for chunk in resp.content.iter_any():  # whatever has arrived: many lines
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                if len(rest) > MAX_LINE:  # no newline in sight: reject it rather than grow
                    lines.append(rest)
                    rest = b""
                if lines:
                    self.backoff.reset()
                    await receive_many([line for line in lines if line.strip()])
            feed.failed(f"stream {self.url} ended")
