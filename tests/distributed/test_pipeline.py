"""The whole distributed pipeline, each role its own process as users start them.

ingest (simulator) -> Kafka ``ticks`` -> stream -> MongoDB and Kafka ``updates`` -> two web
nodes -> websocket clients and the HTTP API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.distributed import Cluster

pytestmark = pytest.mark.timeout(180)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def bus_lag(
    session: aiohttp.ClientSession, url: str, reader: str, topic: str
) -> float | None:
    async with session.get(f"{url}metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pricestream_bus_lag" and sample.labels == {
                "consumer": reader,
                "topic": topic,
            }:
                return sample.value
    return None


async def test_ticks_flow_from_ingest_through_kafka_and_mongodb_to_every_web_node(
    cluster: Cluster,
) -> None:
    stream = cluster.start("stream", "stream")
    web_a = cluster.start("web", "web-a")
    web_b = cluster.start("web", "web-b")
    ingest = cluster.start(
        "ingest", "ingest", PRICESTREAM_SIMULATOR_ENABLED="true", PRICESTREAM_SIMULATOR_RATE_HZ="40"
    )
    urls = [await cluster.wait_running(p) for p in (stream, web_a, web_b, ingest)]
    stream_url, web_urls = urls[0], urls[1:3]

    async with aiohttp.ClientSession() as session:
        # Candles written by the stream worker to MongoDB are served by both web nodes.
        for url in web_urls:
            async with asyncio.timeout(30):
                while True:
                    status, body = await get_json(
                        session, f"{url}api/v1/symbols/XAU-USD/candles?res=1s&limit=5"
                    )
                    if status == 200 and body["candles"]:
                        break
                    assert status in (200, 404), body  # 404: no tick of XAU-USD stored yet
                    await asyncio.sleep(0.2)
            assert body["candles"][-1]["close"] > 0
        status, body = await get_json(session, f"{stream_url}readyz")
        assert (status, body["status"], body["roles"]) == (200, "ready", ["stream"])
        status, body = await get_json(session, f"{urls[3]}healthz")
        assert (status, body["status"]) == (200, "ok")
        # Each role shows how far its Kafka consumers are behind the end of their topics.
        for url, reader, topic in [(stream_url, "stream", "ticks"), (web_urls[0], "hub", "updates"),
                                   (web_urls[1], "hub", "updates")]:  # fmt: skip
            async with asyncio.timeout(30):
                while True:
                    lag = await bus_lag(session, url, reader, topic)
                    if lag is not None:
                        break
                    await asyncio.sleep(0.2)  # known after the consumer's first fetch
            assert 0 <= lag < 1_000  # keeping up with 40 ticks/s

    # Each web node reads all of ``updates``: a client on either sees numbered live ticks.
    for url in web_urls:
        ws_url = url.replace("http://", "ws://") + "ws"
        async with connect(ws_url) as ws:
            sub = {"op": "subscribe", "channels": ["ticks:XAU-USD"]}
            await ws.send(orjson.dumps(sub).decode())
            got: list[tuple[int, float]] = []
            async with asyncio.timeout(30):
                while len(got) < 5:
                    msg = orjson.loads(await ws.recv())
                    assert msg["type"] in ("snapshot", "update"), msg
                    if msg["type"] == "update":
                        got.append((msg["seq"], msg["data"]["price"]))
            assert [s for s, _ in got] == list(range(got[0][0], got[0][0] + 5))
            assert all(price > 0 for _, price in got)

    # SIGTERM: each role drains and exits cleanly, saying so.
    for process in (ingest, stream, web_a, web_b):
        await process.stop(grace=20)
        assert process.proc.returncode == 0, cluster.logs(process)
        assert "stopped" in process.log.read_text()
