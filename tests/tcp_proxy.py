"""A TCP proxy on 127.0.0.1 that a test can cut or stall: network failures between two ends.

``cut()`` resets every connection it carries and refuses new ones (accepts, then resets them)
until ``restore()``, as a dropped mobile link or a restarted load balancer would.

``stall()`` keeps every connection open but forwards no bytes either way, and accepts new
connections without forwarding theirs either, until ``resume()``, as a hung server (or a
black-holed route) would: nothing fails, nothing answers. What was sent meanwhile is held and
delivered on ``resume()``, late, as a server that wakes up would read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0  # connections carried through
        self.refused = 0  # connections reset while cut
        self.refusing = False
        self._flowing = asyncio.Event()  # cleared while stalled
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cut(self) -> int:
        """Reset every carried connection and refuse new ones; return how many were reset."""
        self.refusing = True
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    def restore(self) -> None:
        self.refusing = False

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        """Forward no more bytes, either way, on carried or new connections, until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with what was held while stalled."""
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self.resume()  # let pipes held by a stall see the reset and finish
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.refusing:
                self.refused += 1
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                writer.transport.abort()
                return
            self.accepted += 1
            pair = {writer, up_writer}
            self._writers |= pair
            try:
                await asyncio.gather(
                    _pipe(reader, up_writer, self._flowing), _pipe(up_reader, writer, self._flowing)
                )
            finally:
                self._writers -= pair
                for w in pair:
                    w.transport.abort()
        finally:
            self._handlers.discard(task)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    """Copy while ``flowing`` until EOF (then pass the EOF on) or until either side is reset."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65_536):
            await flowing.wait()
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
        await flowing.wait()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
