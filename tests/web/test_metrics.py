"""``GET /metrics`` over real HTTP: the embedded service, and the apps of the other roles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from render.service import RenderConfig
from stream.bus.memory import MemoryBus
from stream.contract import TICKS
from stream.store.sqlite import SqliteStore
from tests.conftest import Service
from tests.web.test_api import METALS, wait_for_prices
from web.app import make_app, make_health_app, make_render_app
from web.metrics import LIVE, watch_consumer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never true: {what}")


async def test_the_embedded_service_reports_its_pipeline(service: Service) -> None:
    await wait_for_prices(service, METALS)
    url = service.url + "metrics"
    async with aiohttp.ClientSession() as http, http.ws_connect(service.ws_url) as ws:
        await ws.send_json({"op": "subscribe", "channels": ["ticks:XAU-USD"]})
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
        assert (await ws.receive_json(timeout=5))["type"] == "update"
        for _ in range(2):  # the second request for the same chart is a cache hit
            async with http.get(service.url + "charts/XAU-USD.png?range=1h") as resp:
                assert resp.status == 200

        async def reported() -> bool:
            s = await scrape(url)
            messages = [
                v for (name, _), v in s.items() if name == "pricestream_vendor_messages_total"
            ]
            return value(s, "pricestream_store_write_seconds_count") >= 1 and sum(messages) > 0

        await until(reported, "a store write and a vendor status with messages")
        s = await scrape(url)
        assert value(s, "pricestream_websocket_clients") == 1
    assert value(s, "pricestream_websocket_messages_sent_total") >= 1
    assert value(s, "pricestream_websocket_conflated_total") == 0
    ticks_in = value(s, "pricestream_ticks_in_total")
    assert ticks_in >= 4
    assert 0 < value(s, "pricestream_ticks_out_total") <= ticks_in
    assert 0 <= value(s, "pricestream_bus_committed_total") <= ticks_in
    committed = value(s, "pricestream_bus_committed_total")
    assert value(s, "pricestream_uncommitted_ticks") == ticks_in - committed
    for reader, topic in [
        ("stream", "ticks"),
        ("hub", "updates"),
        ("deadletter-archive", "deadletter"),
    ]:
        # the in-process bus: a reader keeping up at 80 ticks/s has at most a few waiting
        assert 0 <= value(s, "pricestream_bus_lag", consumer=reader, topic=topic) < 1_000
    count = value(s, "pricestream_store_write_seconds_count")
    assert value(s, "pricestream_store_write_seconds_bucket", le="+Inf") == count
    assert value(s, "pricestream_store_write_seconds_sum") > 0
    assert value(s, "pricestream_render_cache_hits_total") >= 1
    assert value(s, "pricestream_render_cache_misses_total") >= 1
    assert 0 < value(s, "pricestream_render_cache_hit_ratio") < 1
    assert value(s, "pricestream_render_queue_depth", pool="charts") == 0
    assert value(s, "pricestream_render_queue_limit", pool="charts") == 512
    vendors = {labels for name, labels in s if name == "pricestream_vendor_messages_total"}
    assert vendors, "no vendor reported"
    assert sum(value(s, "pricestream_vendor_messages_total", **dict(v)) for v in vendors) > 0
    assert all(value(s, "pricestream_vendor_published_total", **dict(v)) > 0 for v in vendors)
    assert value(s, "pricestream_http_responses_total", code="200") >= 3
    assert value(s, "process_resident_memory_bytes") > 0


async def test_live_counters_added_to_by_the_hub_show_up(tmp_path: Path) -> None:
    # What the websocket layer does when it conflates or drops: add to the app's counters.
    store = await SqliteStore.open(tmp_path / "s.db")
    app = make_app(store=store, bus=MemoryBus())
    try:
        async with TestServer(app, host="127.0.0.1") as server:
            app[LIVE].conflated += 3
            app[LIVE].dropped += 2
            s = await scrape(str(server.make_url("/metrics")))
    finally:
        await store.close()
    assert value(s, "pricestream_websocket_conflated_total") == 3
    assert value(s, "pricestream_websocket_dropped_total") == 2
    assert value(s, "pricestream_websocket_clients") == 0


async def test_bus_lag_shows_what_a_watched_consumer_has_not_read_yet() -> None:
    bus = MemoryBus()
    app = make_health_app(roles=("stream",), ready=lambda: None)
    consumer = await bus.consumer(TICKS, group="stream")
    watch_consumer(app, consumer, reader="stream", topic=TICKS)
    producer = await bus.producer()
    await producer.send_many(TICKS, [(b"XAU-USD", b"{}")] * 10)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/metrics"))
        assert value(await scrape(url), "pricestream_bus_lag", consumer="stream", topic=TICKS) == 10
        assert len(await consumer.poll(max_records=4, timeout_ms=100)) == 4
        assert value(await scrape(url), "pricestream_bus_lag", consumer="stream", topic=TICKS) == 6
        await consumer.close()  # unknown now: the gauge has no sample rather than a wrong one
        lags = [k for k in await scrape(url) if k[0] == "pricestream_bus_lag"]
    assert lags == []


async def test_a_process_without_the_web_role_serves_metrics_on_its_health_port() -> None:
    app = make_health_app(roles=("ingest",), ready=lambda: None)
    async with TestServer(app, host="127.0.0.1") as server:
        s = await scrape(str(server.make_url("/metrics")))
    assert value(s, "process_cpu_seconds_total") >= 0
    assert not any(name.startswith("pricestream_ticks") for name, _ in s)


async def test_the_render_role_reports_its_queues_and_cache(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    config = RenderConfig(chart_workers=1, text_workers=1, cache_dir=None, chart_queue=7)
    try:
        async with TestServer(make_render_app(store=store, render=config), host="127.0.0.1") as srv:
            s = await scrape(str(srv.make_url("/metrics")))
    finally:
        await store.close()
    assert value(s, "pricestream_render_queue_limit", pool="charts") == 7
    assert value(s, "pricestream_render_cache_hit_ratio") == 0


async def test_two_apps_in_one_process_keep_their_own_registries() -> None:
    first = make_health_app(roles=("ingest",), ready=lambda: None)
    second = make_health_app(roles=("stream",), ready=lambda: None)
    async with TestServer(first, host="127.0.0.1") as a, TestServer(second, host="127.0.0.1") as b:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(a.make_url("/healthz")) as resp:
                    assert resp.status == 200
        sa = await scrape(str(a.make_url("/metrics")))
        sb = await scrape(str(b.make_url("/metrics")))
    assert value(sa, "pricestream_http_responses_total", code="200") == 3
    assert ("pricestream_http_responses_total", (("code", "200"),)) not in sb
