"""One live connection on the event loop: its ``Outbox``, the pump that writes it, and closing.

``Client`` holds what is transport-neutral; ``WsClient`` (websocket) and ``SseClient`` (event
stream) say how a message is written and how a connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import orjson

from web.auth import AuthConfig, Authenticator, Identity
from web.live.config import Counters, Counts, LiveConfig
from web.live.outbox import Outbox
from web.live.protocol import parse_channel

log = logging.getLogger(__name__)


class Client:
    """One connection's subscriptions and its bounded outbox; subclasses write to the wire."""

    #: most messages one pump step hands to ``_write_many``; 1 where a write reads ``sent_seq``
    write_batch = 1

    def __init__(
        self,
        config: LiveConfig,
        counters: Counters | None = None,
        *,
        auth: Authenticator | None = None,
    ) -> None:
        self.config = config
        self.auth = auth or Authenticator(AuthConfig())
        self.counters: Counters = counters if counters is not None else Counts()
        self.box = Outbox(
            max_messages=config.send_buffer_messages,
            max_bytes=config.send_buffer_bytes,
            counters=self.counters,
        )
        self.channels: set[str] = set()
        self.sent = 0
        self.writing = False  # a write to the socket has started and not finished
        self.stalled_since: float | None = None  # set by Hub.watch: when it saw no progress
        self.sent_at_look = 0
        self.closing: str | None = None  # why the client is being closed
        self.principal: str | None = None  # who authenticated, if anyone
        self.expires_s: float | None = None  # when the principal's token expires (epoch s)
        self._wake = asyncio.Event()
        self._release_at: asyncio.TimerHandle | None = None  # the outbox's throttles are due
        self._closer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None  # at the token's expiry

    @property
    def dropped(self) -> bool:
        return self.closing is not None

    def authenticate(self, identity: Identity | None) -> None:
        """Take ``identity`` (from the request's headers or an auth op) as the client's, and set
        a timer at its token's expiry (moved by a new token)."""
        self.principal = None if identity is None else identity.name
        self.expires_s = None if identity is None else identity.expires_s
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.expires_s is not None and self.closing is None:
            delay_s = max(0.0, self.expires_s - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay_s, self._expired)

    def _expired(self) -> None:
        """The token's expiry timer: close the connection if it holds a private channel."""
        self._expiry = None
        now_s = time.time()
        if self.expires_s is None or self.closing is not None:
            return
        if now_s <= self.expires_s:  # the wall clock was set back: wait again
            self._expiry = asyncio.get_running_loop().call_later(
                self.expires_s - now_s, self._expired
            )
            return
        private = sorted(c for c in self.channels if self.auth.is_private(parse_channel(c)[1]))
        if private:
            log.info("closing a live client of %s: its token expired", self.principal)
            self._token_expired(f"token expired; it held {private[0]}")

    def _token_expired(self, reason: str) -> None:
        """Close the connection (4001): its token expired while it held a private channel."""
        raise NotImplementedError

    def authorized(self, now_s: float) -> bool:
        """Whether the client may take private channels at ``now_s`` (epoch seconds)."""
        return self.principal is not None and (self.expires_s is None or now_s <= self.expires_s)

    # -- queueing: called from the fan-out, never awaits --------------------------------------

    def offer(self, channel: str, seq: int, bucket: int | None, text: str) -> None:
        """Queue one update of ``channel``; conflates rather than waits."""
        if self.closing is not None:
            return
        box = self.box
        if not box.queue:
            if (
                bucket is None
                and not self.writing
                and box.direct(channel, seq)
                and self._write_now(text)
            ):
                box.sent(channel, seq)  # the socket took it at once: no pump wakes up
                self.sent += 1
                return
            self._wake.set()  # the pump waits only on an empty outbox
        due = box.offer(channel, seq, bucket, text)
        if due is not None:
            self._release_by(due)
        elif box.bytes > box.max_bytes:
            self.kill(f"too slow: more than {box.max_bytes} bytes waiting")

    def offer_run(self, channel: str, run: list[tuple[int, str]]) -> None:
        """Queue consecutive updates of ``channel`` (the ticks of one bus record); a client
        that keeps up gets them in one write, since a write costs the same for one frame or
        several."""
        first, last = run[0][0], run[-1][0]
        if (
            self.closing is None
            and not self.writing
            and last - first == len(run) - 1
            and self.box.direct(channel, first)
            and self._write_now_run(tuple(text for _, text in run))
        ):
            self.box.sent(channel, last)
            self.sent += len(run)
            return
        for seq, text in run:
            self.offer(channel, seq, None, text)

    def control(self, message: Mapping[str, object], *, channel: str = "", seq: int = 0) -> None:
        """Queue a message that is never conflated (snapshot, subscribed, error, pong)."""
        if self.closing is None:
            self.box.control(orjson.dumps(message).decode(), channel=channel, seq=seq)
            self._queued()

    def replay(self, channel: str, missed: list[tuple[int, str]]) -> None:
        """Queue the update messages a resuming client missed, in order, never conflated."""
        if self.closing is None:
            self.box.replay(channel, missed)
            self._queued()

    def error(self, code: str, message: str) -> None:
        self.control({"type": "error", "code": code, "message": message})

    def set_rate(self, channel: str, max_hz: float | None) -> None:
        if self.closing is None:
            self.box.set_rate(channel, max_hz)
            self._queued()

    def forget(self, channel: str) -> None:
        self.channels.discard(channel)
        self.box.forget(channel)

    def _release_by(self, due_s: float) -> None:
        """Have the outbox's ``release`` called at ``due_s`` (loop time) or before."""
        timer = self._release_at
        if timer is not None:
            if timer.when() <= due_s:
                return
            timer.cancel()
        self._release_at = asyncio.get_running_loop().call_at(due_s, self._release)

    def _release(self) -> None:
        self._release_at = None
        if self.closing is not None:
            return
        following = self.box.release(asyncio.get_running_loop().time())
        if following is not None:
            self._release_by(following)
        self._queued()

    def _queued(self) -> None:
        """Something may have been queued: wake the pump, or close a client that is too slow."""
        if self.box.queue:
            self._wake.set()
        if self.box.overflowing:
            self.kill(f"too slow: more than {self.box.max_bytes} bytes waiting")

    def kill(self, reason: str) -> None:
        """Close the client with 4008 without waiting for it; its outbox is freed at once."""
        if self.closing is not None:
            return
        self.counters.slow_closed += 1
        log.warning("closing a live client: %s (%d messages sent)", reason, self.sent)
        self._shut(reason)
        self._closer = asyncio.get_running_loop().create_task(self._close_slow(reason))

    def _shut(self, reason: str) -> None:
        """Stop queueing for the client and free what waits; its close is the caller's."""
        self.closing = reason
        self.box.clear()
        if self._release_at is not None:
            self._release_at.cancel()
            self._release_at = None
        self._wake.set()

    # -- the pump: the only place that awaits the client --------------------------------------

    async def pump(self) -> None:
        """Write queued messages until the client is closed, what waits in one go."""
        box = self.box
        while self.closing is None:
            batch = box.take(self.write_batch)
            if not batch:
                if not box.queue:
                    self._wake.clear()
                    await self._idle()
                continue
            self.writing = True
            await self._write_many(batch)
            self.writing = False
            self.sent += len(batch)

    async def finish(self) -> None:
        """Wait for a close started by ``kill`` (or another close the client started)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer

    async def going_away(self) -> None:
        """Tell the client that this server is shutting down (reconnect elsewhere)."""
        raise NotImplementedError

    def _write_now(self, text: str) -> bool:
        """Write one message at once if the transport takes it without waiting; False: queue."""
        return False

    def _write_now_run(self, texts: tuple[str, ...]) -> bool:
        """``_write_now`` for several messages in one write."""
        return False

    async def _idle(self) -> None:
        await self._wake.wait()

    async def _write(self, text: str, channel: str) -> None:
        raise NotImplementedError

    async def _write_many(self, batch: list[tuple[str, str]]) -> None:
        """Write ``(text, channel)`` messages in order; one ``_write`` each unless overridden."""
        for text, channel in batch:
            await self._write(text, channel)

    async def _close_slow(self, reason: str) -> None:
        raise NotImplementedError
