"""The roles, assembled: adapters are chosen here, from the settings, and nowhere else.

``run_roles`` runs any set of roles in this process on the configured bus and store:

- ``ingest``: the collectors, publishing ticks to the bus;
- ``stream``: a stream worker of the consumer group, the dead-letter archive and retention;
- ``web``: the HTTP API, websockets and the live page, fed by ``updates`` from the bus;
- ``render``: chart images and text snapshots from its own pools of worker processes (inside
  the web app when both run in one process, on its own behind nginx otherwise).

``pricestream run`` is all of them on the in-process bus and SQLite; ``pricestream stream``
and the other role commands are one each, on Kafka and MongoDB. A role without the web one
still listens on ``server.port`` for ``/healthz`` and ``/readyz`` (for health checks).

Shutdown keeps every acknowledged tick: stop the collectors and flush their producer, let the
stream worker finish (on the in-process bus: drain it) and flush the store, archive the last
dead letters, then stop the web server and close the store and the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

from aiohttp import web

from ingest.replay import Progress
from pricestream.gcpolicy import GcPolicy, keep_collector_quiet
from pricestream.settings import (
    Settings,
    auth_config,
    http_options,
    live_config,
    parse_duration_ms,
    precision,
    render_config,
    server_limits,
)
from stream.archive import DeadLetterArchive, TickArchive
from stream.bus.kafka import KafkaBus, KafkaOptions, TopicSpec
from stream.bus.memory import MemoryBus
from stream.consumer import StreamWorker
from stream.contract import (
    DEADLETTER,
    TICKS,
    UPDATES,
    VENDOR_TICKS,
    VENDORS,
    Bus,
    Producer,
    Store,
    StoreError,
    now_ms,
)
from stream.store.mongo import MongoStore
from stream.store.sqlite import SqliteStore
from stream.windows import Windows
from web.app import GuardedSite, make_app, make_health_app, make_render_app, make_runner
from web.keys import HUB
from web.metrics import watch_consumer, watch_sender, watch_worker

log = logging.getLogger(__name__)

ROLES = ("ingest", "stream", "web", "render")
PURGE_EVERY_S = 600
STATUS_EVERY_S = 60


@dataclass(frozen=True, slots=True)
class Running:
    """What ``on_ready`` gets: where the process listens, its bus and its stream worker."""

    url: str
    port: int
    roles: tuple[str, ...]
    bus: Bus
    worker: StreamWorker | None


def kafka_options(settings: Settings) -> KafkaOptions:
    b = settings.bus

    def spec(topic: str, name: str, partitions: int, retention: str) -> tuple[str, TopicSpec]:
        return topic, TopicSpec(name, partitions, parse_duration_ms(retention))

    topics = dict(
        [
            spec(TICKS, b.ticks_topic, b.ticks_partitions, b.ticks_retention),
            spec(UPDATES, b.updates_topic, b.updates_partitions, b.updates_retention),
            spec(DEADLETTER, b.deadletter_topic, b.deadletter_partitions, b.deadletter_retention),
            # the vendors' own ticks beside the composite ones, and the vendor status snapshots
            spec(VENDOR_TICKS, VENDOR_TICKS, b.ticks_partitions, b.ticks_retention),
            spec(VENDORS, VENDORS, 1, "1d"),
        ]
    )
    return KafkaOptions(
        bootstrap=b.bootstrap,
        client_id=b.client_id,
        topics=topics,
        replication_factor=b.replication_factor,
        linger_ms=b.linger_ms,
        request_timeout_ms=b.request_timeout_ms,
        delivery_timeout_ms=b.delivery_timeout_ms,
        session_timeout_ms=b.session_timeout_ms,
        partition_map=dict(b.partition_map),
    )


@contextlib.asynccontextmanager
async def open_bus(settings: Settings) -> AsyncIterator[Bus]:
    if settings.bus.kind == "kafka":
        kafka = KafkaBus(kafka_options(settings))
        try:
            await kafka.start()
            yield kafka
        finally:
            await kafka.close()
        return
    memory = MemoryBus(capacity=settings.stream.bus_capacity)
    try:
        yield memory
    finally:
        await memory.close()


async def open_store(settings: Settings) -> Store:
    s = settings.storage
    if s.kind == "mongo":
        store: Store = await MongoStore.open(
            s.mongo_uri,
            database=s.mongo_database,
            retention_ms=settings.retention_ms,
            max_deadletters=s.max_deadletters,
            read_preference=s.read_preference,
            timeout_ms=s.timeout_ms,
            tick_archive_ms=s.tick_archive_ms,
        )
        log.info("store: MongoDB database %s (reads: %s)", s.mongo_database, s.read_preference)
        return store
    path = s.data_dir / "pricestream.db"
    store = await SqliteStore.open(path, retention_ms=settings.retention_ms,
                                   max_deadletters=s.max_deadletters,
                                   tick_archive_ms=s.tick_archive_ms)  # fmt: skip
    log.info("store: SQLite file %s", path)
    return store


async def run_roles(
    settings: Settings,
    *,
    roles: Collection[str] = ROLES,
    stop: asyncio.Event,
    on_ready: Callable[[Running], None] | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Run ``roles`` until ``stop`` is set, then shut down cleanly.

    ``on_progress(done_bytes, total_bytes)`` follows a replay vendor's file, if any.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {', '.join(ROLES)}")
    async with open_bus(settings) as bus:
        store = await open_store(settings) if {"stream", "web", "render"} & set(roles) else None
        try:
            await _serve(settings, tuple(r for r in ROLES if r in roles), bus, store, stop,
                         on_ready, on_progress)  # fmt: skip
        finally:
            if store is not None:
                await store.close()
    log.info("stopped")


async def _serve(
    settings: Settings,
    roles: tuple[str, ...],
    bus: Bus,
    store: Store | None,
    stop: asyncio.Event,
    on_ready: Callable[[Running], None] | None,
    on_progress: Progress | None = None,
) -> None:
    worker: StreamWorker | None = None
    archive: DeadLetterArchive | None = None
    tick_archive: TickArchive | None = None
    if "stream" in roles:
        assert store is not None
        worker = await StreamWorker.open(
            bus,
            store=store,
            windows=Windows(boundary=settings.boundary, grace_ms=settings.stream.grace_ms),
            group=settings.bus.group,
            max_batch=settings.stream.max_batch,
            flush_interval_ms=settings.stream.flush_interval_ms,
        )
        archive = DeadLetterArchive(
            consumer=await bus.consumer(DEADLETTER, group=f"{settings.bus.group}-archive"),
            store=store,
        )
        if settings.storage.tick_archive_ms is not None:
            tick_archive = TickArchive(
                consumer=await bus.consumer(TICKS, group=f"{settings.bus.group}-tick-archive"),
                store=store,
            )
    render = render_config(settings) if "render" in roles else None
    if "web" in roles:
        assert store is not None
        app = make_app(store=store, bus=bus, render=render, http=http_options(settings),
                       live=live_config(settings), auth=auth_config(settings),
                       precision=precision(settings))  # fmt: skip
    elif render is not None:
        assert store is not None
        app = make_render_app(store=store, render=render, http=http_options(settings),
                              auth=auth_config(settings))  # fmt: skip
    else:
        app = make_health_app(roles=roles, ready=lambda: _ready(worker))
    if worker is not None:
        watch_worker(app, worker.stats)
        watch_consumer(app, worker.consumer, reader="stream", topic=TICKS)
    if archive is not None:
        watch_consumer(app, archive.consumer, reader="deadletter-archive", topic=DEADLETTER)
    if tick_archive is not None:
        watch_consumer(app, tick_archive.consumer, reader="tick-archive", topic=TICKS)
    limits = server_limits(settings)
    runner = make_runner(app, limits=limits, shutdown_timeout_s=5)
    await runner.setup()
    try:
        site = GuardedSite(runner, settings.server.host, settings.server.port, limits=limits)
        await site.start()
        port = _bound_port(runner) or settings.server.port
        host = settings.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        running = Running(f"http://{shown}:{port}/", port, roles, bus, worker)
        log.info("roles %s on %s bus, daily boundary %s", ", ".join(roles), settings.bus.kind,
                 settings.boundary)  # fmt: skip
        async with asyncio.TaskGroup() as tasks:
            ingest: list[asyncio.Task[None]] = []
            producer: Producer | None = None
            if "ingest" in roles:
                producer = await bus.producer()
                ingest += await _start_ingest(settings, producer, tasks, on_progress, app, store)
            side: list[asyncio.Task[None]] = []
            if worker is not None and archive is not None and store is not None:
                worker_task = tasks.create_task(worker.run(), name="stream")
                archive_task = tasks.create_task(archive.run(), name="deadletters")
                side.append(tasks.create_task(_purge(store), name="purge"))
                if tick_archive is not None:
                    ticks_task = tasks.create_task(tick_archive.run(), name="tick-archive")
                side.append(tasks.create_task(_status(worker, app), name="status"))
            policy = GcPolicy(interval_s=settings.server.gc_freeze_interval_s)
            side.append(tasks.create_task(keep_collector_quiet(policy), name="gc"))
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
            log.info("stopping %s: draining the bus and flushing the store", ", ".join(roles))
            for task in ingest:
                task.cancel()
            if producer is not None:
                await asyncio.gather(*ingest, return_exceptions=True)
                await producer.flush()
            for task in side:
                task.cancel()
            if worker is not None and archive is not None:
                worker.stop()
                await worker_task
                archive.stop()
                await archive_task
                if tick_archive is not None:
                    tick_archive.stop()
                    await ticks_task
    finally:
        await runner.cleanup()


async def _start_ingest(
    settings: Settings,
    producer: Producer,
    tasks: asyncio.TaskGroup,
    on_progress: Progress | None,
    app: web.Application,
    store: Store | None,
) -> list[asyncio.Task[None]]:
    started: list[asyncio.Task[None]] = []
    vendors = settings.collectors  # the configured vendors, else the simulator if enabled
    if vendors:
        # Imported here: the collectors' libraries (websockets, ...) cost the other roles about
        # 0.1 s of start-up for nothing.
        from ingest.service import build as build_ingest

        # The simulator continues from the stored prices (when this process has the store).
        prices = None if store is None else {
            s.symbol: s.latest.price for s in await store.states() if s.latest is not None
        }  # fmt: skip
        ingest = build_ingest(vendors, settings.composite_config, producer, progress=on_progress,
                              sim_prices=prices)  # fmt: skip
        watch_sender(app, ingest.publisher.sender.stats)
        started.append(tasks.create_task(ingest.run(), name="ingest"))
    return started


def _ready(worker: StreamWorker | None) -> str | None:
    """Why this process is not ready, or None."""
    return None if worker is None else worker.not_ready()


def _bound_port(runner: web.AppRunner) -> int | None:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return None


async def _purge(store: Store) -> None:
    while True:
        try:
            await store.purge(now_ms())
        except StoreError as exc:  # retention can wait for the next round
            log.warning("purge failed, next try in %d s: %s", PURGE_EVERY_S, exc)
        await asyncio.sleep(PURGE_EVERY_S)


async def _status(worker: StreamWorker, app: web.Application) -> None:
    last, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        stats, now = worker.stats, time.monotonic()
        rate = (stats.ticks_in - last) / (now - last_t)
        last, last_t = stats.ticks_in, now
        hub = app.get(HUB)
        log.info(
            "status: %d ticks (%.0f/s), %d rejected, %d store writes (%d retried), "
            "%d websocket clients",
            stats.ticks_in,
            rate,
            sum(stats.rejected.values()),
            stats.store_writes,
            stats.store_retries,
            0 if hub is None else len(hub.clients),
        )
