"""Nothing lost, nothing stale, end to end, under faults, checked against the input file.

Every role is its own process, as compose runs them: ``pricestream ingest`` replays a CSV file
of vendor quotes, paced (not as fast as possible) and with the composite price on, as it ships;
two ``pricestream stream`` workers share the ``ticks`` partitions on a real Kafka broker and
write MongoDB (nx-27017); a ``pricestream web`` node serves the candles over HTTP. While the file
is being replayed, each stream worker is killed with SIGKILL once and restarted, and the broker
is killed with SIGKILL and kept down for 30 s. Afterwards every 1m, 5m and 1h candle read over
HTTP, from the web node that ran throughout and from a fresh one, must equal pandas'
``resample().ohlc()`` and tick count of the file's valid rows, and every other row of the file
must be in the dead-letter store with its reason.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.contract import METAL_DECIMALS
from tests.distributed import Cluster, RoleProcess
from tests.services.kafka import FAST_GROUPS, KafkaBroker
from tests.services.mongo import MongoServer

pytestmark = pytest.mark.timeout(480)

METALS = {"XAU-USD": (4050.0, 0.35), "XAG-USD": (50.5, 0.03),
          "XPT-USD": (1550.0, 1.6), "XPD-USD": (1420.0, 2.8)}  # fmt: skip
SPAN_MS = 3 * 3_600_000  # three hours of quotes...
SPEED = 120.0  # ...replayed in 90 s
OUTAGE_S = 30.0
RESOLUTIONS = {"1m": "1min", "5m": "5min", "1h": "1h"}


def write_tape(path: Path, *, start_ms: int, seed: int) -> list[str]:
    """A CSV tape of the four metals, one quote per symbol every 0.5-3.5 s, in time order, with
    a few bad rows planted; returns the bad rows as written."""
    rng = random.Random(seed)
    rows: list[tuple[int, int, str]] = []
    for n, (symbol, (price, spread)) in enumerate(METALS.items()):
        ts = start_ms + rng.randrange(0, 2_000)
        places = METAL_DECIMALS[symbol]
        half = round(spread / 2, places)
        while ts < start_ms + SPAN_MS:
            # Quotes in the metal's own precision, the mid too: what the service prints of it
            # (rounded to that precision) is then exactly what it was given.
            price = round(price * (1 + rng.gauss(0, 0.0002)), places)
            bid, ask = round(price - half, places), round(price + half, places)
            rows.append((ts, n, f"{symbol},{ts},{bid!r},{ask!r}"))
            ts += rng.randrange(500, 3_500)
    rows.sort()
    lines = [line for _, _, line in rows]
    bad = []
    for i in range(1, 9):  # spread over the tape, so faults and bad rows interleave
        at = i * len(lines) // 9
        ts = rows[at][0]
        planted = (
            f"XAU-USD,at {ts},4050.1,4050.4"  # not a time
            if i % 3 == 0
            else f"XAG-USD,{ts},50.9,50.1"  # crossed: bid above ask
            if i % 3 == 1
            else f"XPT-USD,{ts},1550.1"  # a column short
        )
        lines.insert(at + i, planted)
        bad.append(planted)
    path.write_text("symbol,ts_ms,bid,ask\n" + "\n".join(lines) + "\n")
    return bad


def pandas_candles(path: Path) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], int]:
    """The candles of the tape's valid rows, computed by pandas, and how many rows are valid.

    Valid: a time in ms, a bid and an ask, bid <= ask; a tick's price is the mid of its quote;
    prices as the service prints them, to each metal's precision.
    """
    raw = pd.read_csv(path, dtype=str, on_bad_lines="skip", engine="python")
    frame = pd.DataFrame({"symbol": raw["symbol"]})
    for column in ("ts_ms", "bid", "ask"):
        frame[column] = pd.to_numeric(raw[column], errors="coerce")
    frame = frame.dropna()
    frame = frame[frame["bid"] <= frame["ask"]]
    frame["price"] = (frame["bid"] + frame["ask"]) / 2
    frame.index = pd.to_datetime(frame["ts_ms"].astype("int64"), unit="ms")
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for symbol, ticks in frame.groupby("symbol"):
        for res, rule in RESOLUTIONS.items():
            sampled = ticks["price"].resample(rule)
            ohlc = sampled.ohlc()
            ohlc["ticks"] = sampled.count()
            ohlc = ohlc[ohlc["ticks"] > 0]
            places = METAL_DECIMALS[str(symbol)]  # prices are printed to this (README)
            for k in ("open", "high", "low", "close"):
                ohlc[k] = [round(v, places) for v in ohlc[k].to_numpy(dtype=float).tolist()]
            columns = {
                "start_ms": pd.DatetimeIndex(ohlc.index).as_unit("ms").asi8.tolist(),
                **{k: ohlc[k].to_numpy(dtype=float).tolist() for k in ("open", "high", "low",
                                                                      "close")},
                "ticks": ohlc["ticks"].to_numpy(dtype=int).tolist(),
            }  # fmt: skip
            out[(str(symbol), res)] = [dict(zip(columns, row, strict=True))
                                       for row in zip(*columns.values(), strict=True)]  # fmt: skip
    return out, len(frame)


async def served_candles(
    session: aiohttp.ClientSession, url: str, *, start_ms: int
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for symbol in METALS:
        for res in RESOLUTIONS:
            query = {"res": res, "limit": "5000", "start_ms": str(start_ms)}
            async with session.get(f"{url}api/v1/symbols/{symbol}/candles", params=query) as resp:
                if resp.status == 404 and "no prices" in await resp.text():
                    out[(symbol, res)] = []  # not a single tick of it stored yet
                    continue
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            out[(symbol, res)] = [
                {k: c[k] for k in ("start_ms", "open", "high", "low", "close", "ticks")}
                for c in body["candles"]
            ]
    return out


def differences(
    want: dict[tuple[str, str], list[dict[str, Any]]],
    got: dict[tuple[str, str], list[dict[str, Any]]],
) -> list[str]:
    out = []
    for key in sorted(want):
        have = {c["start_ms"]: c for c in got.get(key, [])}
        expected = {c["start_ms"]: c for c in want[key]}
        out += [
            f"{key} at {start}: pandas {expected.get(start)}, served {have.get(start)}"
            for start in sorted(set(have) | set(expected))
            if have.get(start) != expected.get(start)
        ]
    return out


async def converge(
    session: aiohttp.ClientSession,
    url: str,
    want: dict[tuple[str, str], list[dict[str, Any]]],
    *,
    start_ms: int,
    seconds: float,
) -> tuple[list[str], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Read the served candles until they equal ``want`` or ``seconds`` pass: what differs,
    and what was served."""
    deadline = time.monotonic() + seconds
    while True:
        got = await served_candles(session, url, start_ms=start_ms)
        diff = differences(want, got)
        if not diff or time.monotonic() > deadline:
            return diff, got
        await asyncio.sleep(1)


async def ingest_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}metrics") as resp:
        text = await resp.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("pricestream_ingest_")
    }


def replay_over(ingest: RoleProcess) -> bool:
    return "replayed" in ingest.log.read_text(errors="replace")


async def sleep_until(t0: float, at_s: float) -> None:
    await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))


async def test_kills_of_both_workers_and_a_30_s_broker_outage_lose_and_stale_nothing(
    tmp_path: Path, mongo_server: MongoServer
) -> None:
    start_ms = (time.time_ns() // 1_000_000 - 6 * 3_600_000) // 3_600_000 * 3_600_000
    tape = tmp_path / "tape.csv"
    planted = write_tape(tape, start_ms=start_ms, seed=11)
    want, valid_rows = pandas_candles(tape)
    extra = f"""
[[vendors]]
name = "tape"
kind = "replay"
path = "{tape}"
speed = {SPEED}
"""
    async with KafkaBroker(tmp_path / "kafka", extra_properties=FAST_GROUPS) as broker:
        cluster = Cluster(tmp_path, broker, mongo_server, extra_toml=extra)
        try:
            web = cluster.start("web", "web-throughout")
            workers = [cluster.start("stream", "stream-a"), cluster.start("stream", "stream-b")]
            url = await cluster.wait_running(web)
            for worker in workers:
                await cluster.wait_running(worker)
            ingest = cluster.start("ingest", "ingest")
            ingest_url = await cluster.wait_running(ingest)
            t0 = time.monotonic()
            landed = []

            await sleep_until(t0, 15)
            await workers[0].kill()
            landed.append(("SIGKILL stream-a", replay_over(ingest)))
            workers[0] = cluster.start("stream", "stream-a2")
            await cluster.wait_running(workers[0])

            await sleep_until(t0, 30)
            await broker.kill()
            landed.append(("SIGKILL broker", replay_over(ingest)))
            down_at = time.monotonic()
            await asyncio.sleep(10)
            async with aiohttp.ClientSession() as session:
                held = await ingest_metrics(session, ingest_url)
            assert held.get("pricestream_ingest_bus_down") == 1, held
            assert held.get("pricestream_ingest_held", 0) > 0, held
            await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
            await broker.start()

            await sleep_until(t0, 75)
            await workers[1].kill()
            landed.append(("SIGKILL stream-b", replay_over(ingest)))
            workers[1] = cluster.start("stream", "stream-b2")
            await cluster.wait_running(workers[1])

            assert not any(over for _, over in landed), f"a fault came after the replay: {landed}"
            async with asyncio.timeout(120):
                while not replay_over(ingest):
                    assert ingest.alive(), cluster.logs(ingest)
                    await asyncio.sleep(0.5)

            async with aiohttp.ClientSession() as session:
                diff, got = await converge(session, url, want, start_ms=start_ms, seconds=90)
                assert not diff, "\n".join(diff[:20]) + "\n" + cluster.logs()
                fresh = cluster.start("web", "web-fresh")
                fresh_url = await cluster.wait_running(fresh)
                diff, _ = await converge(session, fresh_url, want, start_ms=start_ms, seconds=30)
                assert not diff, "fresh web node:\n" + "\n".join(diff[:20])

            for res in RESOLUTIONS:
                counted = sum(c["ticks"] for (_, r), cs in got.items() if r == res for c in cs)
                assert counted == valid_rows, f"{res}: {counted} ticks counted of {valid_rows}"
            store = await cluster.store()
            letters = [d for d in await store.deadletters(limit=1_000) if d.source == "vendor:tape"]
            # Each once: the archive keys a letter by its Kafka position, so the batch a killed
            # worker wrote and did not commit is not stored again by the next one.
            assert sorted(d.raw.decode() for d in letters) == sorted(planted), letters
            reasons = {d.raw.decode(): d.reason for d in letters}
            assert all(reasons.values()), reasons
            lines = len(tape.read_text().splitlines()) - 1
            assert lines == valid_rows + len(planted)
            summary = next(
                line for line in ingest.log.read_text().splitlines() if "replayed" in line
            )
            assert f"{lines} lines, {valid_rows} published, {len(planted)} rejected" in summary
            assert all(w.alive() for w in workers), cluster.logs(*workers)
            assert "held" in ingest.log.read_text(), "ingest never saw the broker go"
        finally:
            await cluster.close()
