"""A websocket client written out by hand (RFC 6455) for tests that need control of the protocol.

The library clients answer pings by themselves; this one answers only when told to, so a test
can play a peer that is alive on TCP but never pongs, or one that reads nothing at all. It also
sends what no library would: unmasked frames, and frames sent along with the upgrade request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import orjson

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def client_frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final frame, masked as a client must mask it (payloads under 64 KiB); ``masked=False``
    leaves the mask bit clear and sends the payload as it is."""
    n = len(payload)
    bit = 0x80 if masked else 0
    head = bytes([0x80 | opcode, bit | n]) if n < 126 else bytes([0x80 | opcode, bit | 0x7E])
    if n >= 126:
        head += n.to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pings = 0  # pings answered by ``answer_pings``

    @classmethod
    async def open(cls, port: int, *, path: str = "/ws", early: bytes = b"") -> RawWebSocket:
        """Connect to 127.0.0.1:``port`` and complete the opening handshake; ``early`` (frames)
        goes out in the same write as the upgrade request, before the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + early
        )  # fmt: skip
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or b"Sec-WebSocket-Accept: " + accept not in head:
            writer.close()
            raise ConnectionError(f"no websocket upgrade: {head[:200]!r}")
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes, *, masked: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, masked=masked))

    def send_json(self, message: object, *, masked: bool = True) -> None:
        self.send(TEXT, orjson.dumps(message), masked=masked)

    async def frame(self) -> tuple[int, bytes] | None:
        """The next frame as ``(opcode, payload)``; None once the server closed the TCP
        connection (EOF, or a reset)."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def answer_pings(self, texts: asyncio.Queue[bytes]) -> None:
        """Read until the connection ends: pong every ping, put text frames in ``texts``."""
        while (got := await self.frame()) is not None:
            opcode, payload = got
            if opcode == PING:
                self.send(PONG, payload)
                self.pings += 1
            elif opcode == TEXT:
                texts.put_nowait(payload)

    def close(self) -> None:
        self.writer.close()
