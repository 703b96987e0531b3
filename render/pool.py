"""A pool of render worker processes with a bounded queue, batching and a per-batch timeout.

Exceptions: ``PoolError`` is the base; ``Busy`` (the queue is full: answer 503 with
Retry-After), ``RenderFailed`` (the render raised) and its subclasses ``WorkerDied`` (the
worker holding the request died) and ``RenderTimeout`` (the worker took longer than
``timeout_ms`` and was killed).

The event loop never blocks on a worker: it talks to each over a socket pair with asyncio
streams (the framing of ``multiprocessing.Connection``, which the worker uses).
A worker takes every queued job (up to ``max_batch``) in one message, so under load the cost
of a pipe round trip is shared by many renders. A worker that dies or overruns its timeout is
killed and replaced; the requests it held fail at once with ``RenderFailed``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import pickle
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from render import worker
from render.worker import RenderJob

log = logging.getLogger(__name__)


class PoolError(Exception):
    """Base of the render pool's errors."""


class Busy(PoolError):
    """The queue is full; ask again after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RenderFailed(PoolError):
    """The render raised, or its worker died."""


class WorkerDied(RenderFailed):
    """The worker holding the request died; it is being replaced, so asking again may work."""


class RenderTimeout(RenderFailed):
    """The worker took longer than the pool's timeout and was killed."""


@dataclass
class PoolStats:
    rendered: int = 0
    failed: int = 0
    rejected: int = 0
    restarts: int = 0
    batches: int = 0


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    writer: asyncio.StreamWriter
    ready: asyncio.Future[None]
    reader_task: asyncio.Task[None] | None = None
    busy: list[tuple[int, asyncio.Future[bytes]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    dead: bool = False
    #: the data sets (candle arrays) the worker holds, with their sizes: the pool mirrors them
    data_keys: OrderedDict[Hashable, int] = field(default_factory=OrderedDict)
    data_bytes: int = 0


def _frame(payload: bytes) -> bytes:
    """``multiprocessing.Connection``'s framing, which the worker reads with ``recv_bytes``."""
    if len(payload) > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload
    return struct.pack("!i", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    if size == -1:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return await reader.readexactly(size)


def _context() -> multiprocessing.context.BaseContext:
    # forkserver: a worker is forked from a clean server that has the render modules loaded,
    # never from the web process with its event loop and threads; a replacement starts in ms.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["render.worker"])
    return ctx


class Pool:
    def __init__(
        self,
        name: str,
        *,
        workers: int,
        max_queue: int,
        max_batch: int = 16,
        timeout_ms: int = 10_000,
        retry_after_s: int = 1,
        cache_dir: Path | None = None,
        worker_data_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.size = workers
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.timeout_ms = timeout_ms
        self.retry_after_s = retry_after_s
        self.cache_dir = cache_dir
        self.worker_data_bytes = worker_data_bytes
        self.stats = PoolStats()
        self._ctx = _context()
        self._ids = itertools.count()
        self._queue: deque[tuple[int, RenderJob, Hashable, object, asyncio.Future[bytes]]] = deque()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._closing = False
        self._spawning: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._closing = False
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        log.info("render pool %s: %d workers", self.name, self.size)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None and not w.dead]

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def render(self, job: RenderJob, *, data_key: Hashable, data: object) -> bytes:
        """The bytes of ``job``; raises ``Busy`` at once when the queue is full.

        ``data`` (the candles) goes to a worker only if it does not hold ``data_key`` yet: charts
        of the same data version (sizes, themes, formats) share one transfer per worker.
        """
        if self._closing:
            raise RenderFailed(f"render pool {self.name} is closed")
        if not self._idle and len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise Busy(
                f"{self.name} renderer busy: {len(self._queue)} requests queued",
                retry_after_s=self.retry_after_s,
            )
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queue.append((next(self._ids), job, data_key, data, fut))
        self._dispatch()
        return await fut

    async def close(self) -> None:
        self._closing = True
        for task in list(self._spawning):
            task.cancel()
        await asyncio.gather(*self._spawning, return_exceptions=True)
        processes = [w.process for w in self._workers]
        for w in list(self._workers):
            self._retire(w, RenderFailed(f"render pool {self.name} closed"), replace=False)
        while self._queue:
            fut = self._queue.popleft()[-1]
            if not fut.done():
                fut.set_exception(RenderFailed(f"render pool {self.name} closed"))
        await asyncio.gather(
            *(asyncio.to_thread(p.join, 5) for p in processes), return_exceptions=True
        )

    # -- internals ---------------------------------------------------------------------------

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker.serve_socket,
            args=(child, self.cache_dir),
            name=f"render-{self.name}",
            daemon=True,
        )
        try:
            await asyncio.to_thread(process.start)
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=2**20)
        w = _Worker(process, writer, loop.create_future())
        self._workers.append(w)
        w.reader_task = asyncio.create_task(self._read(w, reader), name=f"{self.name}-reader")
        try:
            await asyncio.wait_for(asyncio.shield(w.ready), 60)
        except TimeoutError:
            self._retire(w, RenderFailed("render worker did not start"), replace=False)
            raise RenderFailed(f"render worker {process.pid} did not start in 60 s") from None
        self._idle.append(w)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            batch: list[tuple[int, RenderJob, Hashable]] = []
            adds: list[tuple[Hashable, object]] = []
            drops: list[Hashable] = []
            used: set[Hashable] = set()
            w = self._idle.pop()
            while self._queue and len(batch) < self.max_batch:
                job_id, job, data_key, data, fut = self._queue.popleft()
                if fut.done():  # the client went away while queued
                    continue
                used.add(data_key)
                if data_key in w.data_keys:
                    w.data_keys.move_to_end(data_key)
                else:
                    adds.append((data_key, data))
                    size = int(getattr(data, "nbytes", 0))
                    w.data_keys[data_key] = size
                    w.data_bytes += size
                    # Forget the least recently used sets past the budget, never one this batch
                    # needs (they were moved to the end: reaching one means all are needed).
                    while w.data_bytes > self.worker_data_bytes:
                        oldest = next(iter(w.data_keys))
                        if oldest in used:
                            break
                        w.data_bytes -= w.data_keys.pop(oldest)
                        drops.append(oldest)
                batch.append((job_id, job, data_key))
                w.busy.append((job_id, fut))
            if not batch:
                self._idle.append(w)
                return
            message = (drops, adds, batch)
            w.writer.write(_frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)))
            self.stats.batches += 1
            w.timer = asyncio.get_running_loop().call_later(
                self.timeout_ms / 1000, self._on_timeout, w
            )

    async def _read(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            first = await _read_frame(reader)
            if first != worker.READY:
                raise RenderFailed(f"render worker {w.process.pid} said {first[:40]!r}")
            w.ready.set_result(None)
            while True:
                self._on_results(w, await _read_frame(reader))
        except (asyncio.IncompleteReadError, ConnectionError, RenderFailed) as exc:
            await asyncio.to_thread(w.process.join, 1)
            code = w.process.exitcode
            self._retire(w, WorkerDied(f"render worker {w.process.pid} died (exit {code})"))
            log.debug("render worker %s: %r", w.process.pid, exc)

    def _on_results(self, w: _Worker, message: bytes) -> None:
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        futures = dict(w.busy)
        w.busy.clear()
        for job_id, ok, body in pickle.loads(message):
            fut = futures.pop(job_id, None)
            if fut is None or fut.done():
                continue
            if ok:
                self.stats.rendered += 1
                fut.set_result(body)
            else:
                self.stats.failed += 1
                fut.set_exception(RenderFailed(str(body)))
        self._idle.append(w)
        self._dispatch()

    def _on_timeout(self, w: _Worker) -> None:
        log.warning("render worker %s overran %d ms: killing it", w.process.pid, self.timeout_ms)
        self._retire(
            w, RenderTimeout(f"render took longer than {self.timeout_ms} ms; worker replaced")
        )

    def _retire(self, w: _Worker, error: RenderFailed, *, replace: bool = True) -> None:
        if w.dead:
            return
        w.dead = True
        if w.timer is not None:
            w.timer.cancel()
        if w.process.is_alive():
            w.process.kill()
        w.writer.close()
        if w.reader_task is not None and w.reader_task is not asyncio.current_task():
            w.reader_task.cancel()
        for _, fut in w.busy:
            if not fut.done():
                self.stats.failed += 1
                fut.set_exception(error)
        w.busy.clear()
        if not w.ready.done():
            w.ready.set_exception(error)
            w.ready.exception()  # retrieved: the spawner reports it
        if w in self._idle:
            self._idle.remove(w)
        if w in self._workers:
            self._workers.remove(w)
        if replace and not self._closing:
            log.warning("render worker %s replaced: %s", w.process.pid, error)
            self.stats.restarts += 1
            task = asyncio.create_task(self._respawn(w.process), name=f"respawn-{self.name}")
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

    async def _respawn(self, old: BaseProcess) -> None:
        await asyncio.to_thread(old.join, 5)  # reap it
        try:
            await self._spawn()
        except RenderFailed:
            log.exception("render worker replacement failed")
