"""At a websocket's socket: fail a client that sends unmasked frames; bound the send buffer."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from aiohttp import web

from web.live.config import CLOSE_PROTOCOL_ERROR
from web.live.frames import FrameMasks

log = logging.getLogger(__name__)


class MaskedFramesOnly(asyncio.Protocol):
    """Between a websocket's transport and aiohttp's protocol: passes the client's bytes on
    while its frames are masked. At the first unmasked frame it stops passing anything on and,
    once the handshake is answered (``open``), fails the connection as RFC 6455 section 7.1.7
    says: a close frame with 1002, then the TCP connection is closed (aborted if the client has
    not taken it within a second).

    aiohttp offers no hook where frames are read, so this one sits under it, using nothing but
    asyncio's ``Transport.set_protocol``. The bytes that came in with the upgrade request are
    already in aiohttp's hands when the handler runs: they are checked (not passed on again)
    from aiohttp's buffer of them, where one exists.
    """

    def __init__(self, transport: asyncio.Transport, inner: asyncio.Protocol) -> None:
        self.transport = transport
        self.inner = inner
        self.frames = FrameMasks()
        self.failed = False
        self._on_fail: Callable[[str], None] | None = None
        self._opened = False
        self._abort: asyncio.TimerHandle | None = None

    @classmethod
    def install(cls, request: web.Request) -> MaskedFramesOnly | None:
        """Put a check under ``request``'s connection, before its handshake is answered."""
        # Not ``isinstance(transport, asyncio.Transport)``: uvloop's transports (pricestream
        # run) are not asyncio's classes, though they have the same protocol methods.
        transport = request.transport
        inner = transport.get_protocol() if transport is not None else None
        if transport is None or not isinstance(inner, asyncio.Protocol):
            return None
        guard = cls(transport, inner)
        # aiohttp keeps what followed the upgrade request until the websocket reader exists
        tail = getattr(request.protocol, "_message_tail", b"")
        if isinstance(tail, bytes):
            guard.frames.feed(tail)
        transport.set_protocol(guard)
        return guard

    def open(self, on_fail: Callable[[str], None]) -> None:
        """The handshake is answered: fail the connection now or at its first unmasked frame;
        ``on_fail`` (why) is called first."""
        self._on_fail = on_fail
        self._opened = True
        if self.frames.unmasked:
            self._fail()

    def data_received(self, data: bytes) -> None:
        if self.frames.unmasked:
            return
        good = self.frames.feed(data)
        if good:
            self.inner.data_received(data if good == len(data) else data[:good])
        if self.frames.unmasked and self._opened:
            self._fail()

    def _fail(self) -> None:
        if self.failed:
            return
        self.failed = True
        reason = "frames from a client must be masked (RFC 6455 section 5.1)"
        log.info("failing a websocket connection: it sent an unmasked frame")
        if self._on_fail is not None:
            self._on_fail(reason)
        message = CLOSE_PROTOCOL_ERROR.to_bytes(2, "big") + reason.encode()
        # A server frame is never masked; a close frame carries at most 125 bytes.
        self.transport.write(bytes((0x88, len(message))) + message)
        self.transport.close()
        self._abort = asyncio.get_running_loop().call_later(1.0, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def bound_send_buffer(transport: asyncio.BaseTransport | None, size_bytes: int) -> None:
    """Fix the kernel's send buffer of ``transport``'s socket at ``size_bytes`` (0: leave it).

    What the kernel holds is invisible to a client's outbox: a client that reads nothing first
    fills its socket's send buffer, and only then do messages wait where ``send_buffer_bytes``
    and ``stall_timeout_ms`` see them. A fixed size also stops the kernel growing it.
    """
    sock = transport.get_extra_info("socket") if transport is not None and size_bytes else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)
    except OSError as exc:  # not every socket has one to set
        log.debug("cannot bound a websocket's send buffer: %s", exc)
