"""Every role in one process: in-process bus, SQLite store, the configured collectors, web.

Shutdown order keeps every acknowledged tick: stop the collectors, let the stream worker drain
the bus and flush the store, archive the last dead letters, then stop the web server and close
the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ingest.collector import now_ms
from ingest.replay import Progress
from ingest.service import build as build_ingest
from pricestream.settings import Settings
from stream.bus.memory import MemoryBus
from stream.consumer import StreamWorker
from stream.contract import DEADLETTER, TICKS
from stream.deadletters import DeadLetterArchive
from stream.store.sqlite import SqliteStore
from stream.windows import Windows
from web.app import make_app
from web.keys import HUB

log = logging.getLogger(__name__)

PURGE_EVERY_S = 600
STATUS_EVERY_S = 60


@dataclass(frozen=True, slots=True)
class Running:
    """What ``on_ready`` gets: where the service listens, and its bus and worker (for tools)."""

    url: str
    port: int
    bus: MemoryBus
    worker: StreamWorker


async def run_embedded(
    settings: Settings,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[Running], None] | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Run until ``stop`` is set, then shut down cleanly."""
    db = settings.storage.data_dir / "pricestream.db"
    store = await SqliteStore.open(db, retention_ms=settings.retention_ms)
    bus = MemoryBus(capacity=settings.stream.bus_capacity)
    windows = Windows(boundary=settings.boundary, grace_ms=settings.stream.grace_ms)
    worker = StreamWorker(
        consumer=await bus.consumer(TICKS, group="stream"),
        producer=await bus.producer(),
        store=store,
        windows=windows,
        max_batch=settings.stream.max_batch,
        flush_interval_ms=settings.stream.flush_interval_ms,
    )
    archive = DeadLetterArchive(
        consumer=await bus.consumer(DEADLETTER, group="archive"), store=store
    )
    app = make_app(store=store, bus=bus)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        port = _bound_port(runner) or settings.server.port
        host = settings.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        running = Running(f"http://{shown}:{port}/", port, bus, worker)
        log.info("store %s, daily boundary %s", db, settings.boundary)
        async with asyncio.TaskGroup() as tasks:
            worker_task = tasks.create_task(worker.run(), name="stream")
            archive_task = tasks.create_task(archive.run(), name="deadletters")
            side = [tasks.create_task(_purge(store), name="purge")]
            side.append(tasks.create_task(_status(worker, app), name="status"))
            vendors = settings.collectors
            if vendors:
                ingest = build_ingest(
                    vendors, settings.composite_config, await bus.producer(), progress=on_progress
                )
                side.append(tasks.create_task(ingest.run(), name="ingest"))
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
            log.info("stopping: draining the bus and flushing the store")
            for task in side:
                task.cancel()
            worker.stop()
            await worker_task
            archive.stop()
            await archive_task
    finally:
        await runner.cleanup()
        await bus.close()
        await store.close()
        log.info("stopped")


def _bound_port(runner: web.AppRunner) -> int | None:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return None


async def _purge(store: SqliteStore) -> None:
    while True:
        await store.purge(now_ms())
        await asyncio.sleep(PURGE_EVERY_S)


async def _status(worker: StreamWorker, app: web.Application) -> None:
    last, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        stats, now = worker.stats, time.monotonic()
        rate = (stats.ticks_in - last) / (now - last_t)
        last, last_t = stats.ticks_in, now
        hub = app[HUB]
        log.info(
            "status: %d ticks (%.0f/s), %d rejected, %d store writes, %d websocket clients",
            stats.ticks_in,
            rate,
            sum(stats.rejected.values()),
            stats.store_writes,
            len(hub.clients),
        )
