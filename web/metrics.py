"""Prometheus metrics: ``GET /metrics`` on every role's port, one registry per app.

Nothing on a hot path calls prometheus-client. Each part keeps plain counters of its own (the
stream worker's ``WorkerStats``, the hub's ``delivered``, the renderer's and its pools' stats,
the vendors board, the counters below) and ``PricestreamCollector`` reads them when Prometheus
scrapes. Each app holds its own ``CollectorRegistry`` under ``METRICS``: the library's default
registry is a process global, and two apps in one process (tests do that) must not share one.

For the websocket layer: ``app[LIVE]`` is a ``LiveCounters``; the hub (or anything that
conflates or drops live messages) adds to its fields, plain ints, and they appear as
``pricestream_websocket_conflated_total`` and ``pricestream_websocket_dropped_total``::

    counters = app[LIVE]
    counters.conflated += 1     # an update replaced an older one still waiting to be sent
    counters.dropped += n       # n updates never sent (a client closed for being too slow)
    counters.slow_closed += 1   # a client closed for being too slow

A process with the stream role hands its worker's stats to ``watch_worker`` before it starts,
and every bus consumer whose lag should show to ``watch_consumer`` (the app of the web role
watches its hub's ``updates`` consumer itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from render.service import Renderer
from stream.contract import Consumer
from stream.sender import SenderStats
from stream.stats import STORE_WRITE_BUCKETS_MS, WorkerStats
from web.keys import HUB, RENDERER, VENDOR_BOARD
from web.vendors import VendorBoard


@dataclass(slots=True)
class LiveCounters:
    """What the websocket layer did to messages on the way out, besides sending them."""

    conflated: int = 0
    dropped: int = 0
    slow_closed: int = 0


@dataclass(slots=True)
class HttpCounters:
    """HTTP answers by status code, and requests refused by the rate limit."""

    responses: dict[int, int] = field(default_factory=dict)
    rate_limited: int = 0

    def count(self, status: int) -> None:
        self.responses[status] = self.responses.get(status, 0) + 1


METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)
LIVE: web.AppKey[LiveCounters] = web.AppKey("live_counters", LiveCounters)
HTTP: web.AppKey[HttpCounters] = web.AppKey("http_counters", HttpCounters)
WORKER: web.AppKey[WorkerStats] = web.AppKey("worker_stats", WorkerStats)
#: the outgoing buffers of the ingest role in this process (filled once the role starts)
SENDERS: web.AppKey[list[SenderStats]] = web.AppKey("sender_stats", list)
#: (who reads, topic) -> the bus consumer whose lag ``pricestream_bus_lag`` shows
CONSUMERS: web.AppKey[dict[tuple[str, str], Consumer]] = web.AppKey("bus_consumers", dict)


def install(app: web.Application) -> CollectorRegistry:
    """Give ``app`` its registry and counters; ``routes`` serves them at ``/metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    app[METRICS] = registry
    app[LIVE] = LiveCounters()
    app[HTTP] = HttpCounters()
    app[CONSUMERS] = {}
    app[SENDERS] = []
    registry.register(PricestreamCollector(app))
    ProcessCollector(registry=registry)  # CPU seconds, resident memory, open files
    return registry


def watch_worker(app: web.Application, stats: WorkerStats) -> None:
    """Expose a stream worker's counters and store write latency on ``app``."""
    app[WORKER] = stats


def watch_sender(app: web.Application, stats: SenderStats) -> None:
    """Expose ingest's outgoing buffer (held records, bus outages) on ``app``."""
    app[SENDERS].append(stats)


def watch_consumer(app: web.Application, consumer: Consumer, *, reader: str, topic: str) -> None:
    """Show ``consumer.lag()`` as ``pricestream_bus_lag{consumer=reader,topic=topic}``."""
    app[CONSUMERS][(reader, topic)] = consumer


async def serve(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class PricestreamCollector(Collector):
    """Reads the app's parts at scrape time; a part this process does not run adds nothing."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        yield from _http(app[HTTP])
        stats = app.get(WORKER)
        if stats is not None:
            yield from _worker(stats)
        for sender in app[SENDERS]:
            yield from _sender(sender)
        yield from _lags(app[CONSUMERS])
        hub = app.get(HUB)
        if hub is not None:
            yield GaugeMetricFamily(
                "pricestream_websocket_clients", "Open websocket connections", len(hub.clients)
            )
            yield _counter(
                "pricestream_websocket_messages_sent",
                "Messages handed to websocket clients' send queues (snapshots excluded)",
                hub.delivered,
            )
            yield from _live(app[LIVE])
        renderer = app.get(RENDERER)
        if renderer is not None:
            yield from _render(renderer)
        board = app.get(VENDOR_BOARD)
        if board is not None:
            yield from _vendors(board)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _http(counters: HttpCounters) -> Iterator[Metric]:
    responses = CounterMetricFamily(
        "pricestream_http_responses", "HTTP responses by status code", labels=["code"]
    )
    for code, n in sorted(counters.responses.items()):
        responses.add_metric([str(code)], n)
    yield responses
    yield _counter(
        "pricestream_http_rate_limited",
        "HTTP requests refused with 429 by the per-client rate limit",
        counters.rate_limited,
    )


def _worker(s: WorkerStats) -> Iterator[Metric]:
    yield _counter(
        "pricestream_ticks_in", "Ticks read from the bus by the stream worker", s.ticks_in
    )
    yield _counter(
        "pricestream_ticks_out",
        "Ticks accepted into the candles and published as live updates",
        s.ticks_accepted,
    )
    yield _counter(
        "pricestream_ticks_replayed",
        "Ticks read again after a restart and recognised as already counted",
        s.replayed,
    )
    yield _counter("pricestream_updates_out", "Update messages published on the bus", s.updates_out)
    rejects = CounterMetricFamily(
        "pricestream_rejects",
        "Ticks the stream worker sent to the dead-letter topic, by reason",
        labels=["reason"],
    )
    for reason, n in sorted(s.rejected.items()):
        rejects.add_metric([reason], n)
    yield rejects
    yield _counter(
        "pricestream_bus_committed",
        "Ticks whose bus positions are committed (after their store write)",
        s.ticks_committed,
    )
    yield GaugeMetricFamily(
        "pricestream_uncommitted_ticks",
        "Ticks read from the bus whose positions are not committed yet (store write pending)",
        max(0, s.ticks_in - s.ticks_committed),
    )
    cumulative, buckets = 0, []
    for bound_ms, n in zip(STORE_WRITE_BUCKETS_MS, s.store_write_buckets, strict=False):
        cumulative += n
        buckets.append((_seconds(bound_ms), cumulative))
    buckets.append(("+Inf", cumulative + s.store_write_buckets[-1]))
    yield HistogramMetricFamily(
        "pricestream_store_write_seconds",
        "Time of one store write (candles and symbol states), retries included",
        buckets=buckets,
        sum_value=s.store_write_ms_total / 1000,
    )
    yield _counter(
        "pricestream_store_retries",
        "Store writes retried because the store was unavailable",
        s.store_retries,
    )


def _sender(s: SenderStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "pricestream_ingest_held",
        "Records ingest holds for the bus: queued or in a round not yet delivered",
        s.queued,
    )
    yield _counter(
        "pricestream_ingest_delivered", "Records ingest delivered to the bus", s.delivered
    )
    yield _counter(
        "pricestream_ingest_bus_failures",
        "Rounds of records the bus refused, each sent again",
        s.failures,
    )
    yield GaugeMetricFamily(
        "pricestream_ingest_bus_down",
        "1 while the bus does not take ingest's records (refused, or no answer for 5 s)",
        0 if s.down_since_ms is None else 1,
    )


def _lags(consumers: dict[tuple[str, str], Consumer]) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "pricestream_bus_lag",
        "Records between a bus consumer's next read and the end of its topic's partitions"
        " (no sample while unknown)",
        labels=["consumer", "topic"],
    )
    for (reader, topic), consumer in sorted(consumers.items()):
        n = consumer.lag()
        if n is not None:
            lag.add_metric([reader, topic], n)
    yield lag


def _seconds(ms: float) -> str:
    return repr(ms / 1000)


def _live(c: LiveCounters) -> Iterator[Metric]:
    yield _counter(
        "pricestream_websocket_conflated",
        "Live updates replaced by a newer one before they were sent",
        c.conflated,
    )
    yield _counter(
        "pricestream_websocket_dropped", "Live updates never sent to a client", c.dropped
    )
    yield _counter(
        "pricestream_websocket_slow_closed",
        "Websocket clients closed for falling too far behind",
        c.slow_closed,
    )


def _render(renderer: Renderer) -> Iterator[Metric]:
    stats = renderer.stats
    depth = GaugeMetricFamily(
        "pricestream_render_queue_depth", "Render requests waiting for a worker", labels=["pool"]
    )
    limit = GaugeMetricFamily(
        "pricestream_render_queue_limit",
        "Queued render requests past which the pool answers 503",
        labels=["pool"],
    )
    rendered = CounterMetricFamily(
        "pricestream_render_rendered", "Requests rendered by the pool's workers", labels=["pool"]
    )
    busy = CounterMetricFamily(
        "pricestream_render_busy", "Requests refused because the queue was full", labels=["pool"]
    )
    failed = CounterMetricFamily(
        "pricestream_render_failed", "Renders that failed or timed out", labels=["pool"]
    )
    for pool in (renderer.charts, renderer.text):
        depth.add_metric([pool.name], pool.queued)
        limit.add_metric([pool.name], pool.max_queue)
        rendered.add_metric([pool.name], pool.stats.rendered)
        busy.add_metric([pool.name], pool.stats.rejected)
        failed.add_metric([pool.name], pool.stats.failed)
    yield from (depth, limit, rendered, busy, failed)
    yield _counter("pricestream_render_cache_hits", "Answers from the render cache", stats.hits)
    yield _counter(
        "pricestream_render_cache_misses", "Answers that had to be rendered", stats.misses
    )
    asked = stats.hits + stats.misses
    yield GaugeMetricFamily(
        "pricestream_render_cache_hit_ratio",
        "Cache hits over all answers since the start (0 before the first)",
        stats.hits / asked if asked else 0.0,
    )


def _vendors(board: VendorBoard) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "pricestream_vendor_messages", "Messages received from a vendor feed", labels=["vendor"]
    )
    published = CounterMetricFamily(
        "pricestream_vendor_published", "Ticks a vendor feed published", labels=["vendor"]
    )
    rejects = CounterMetricFamily(
        "pricestream_vendor_rejects",
        "Vendor messages rejected by validation, by reason",
        labels=["vendor", "reason"],
    )
    reconnects = CounterMetricFamily(
        "pricestream_vendor_reconnects", "Reconnects to a vendor feed", labels=["vendor"]
    )
    connected = GaugeMetricFamily(
        "pricestream_vendor_connected", "1 while connected to the vendor", labels=["vendor"]
    )
    stale = GaugeMetricFamily(
        "pricestream_vendor_stale", "1 while the vendor is silent past its limit", labels=["vendor"]
    )
    for name in sorted(board.latest):
        s = board.latest[name]
        messages.add_metric([name], s.messages)
        published.add_metric([name], s.published)
        reconnects.add_metric([name], s.reconnects)
        connected.add_metric([name], int(s.connected))
        stale.add_metric([name], int(s.stale))
        for reason, n in sorted(s.rejects.items()):
            rejects.add_metric([name, reason], n)
    yield from (messages, published, rejects, reconnects, connected, stale)
