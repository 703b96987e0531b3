"""The Python client against a real server: reconnect and resume by seq; ``pricestream tail``."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from pricestream.client import LiveClient, LiveError
from tests.conftest import Service
from tests.web.live_server import live_server
from tests.web.test_api import METALS, wait_for_prices
from web.auth import AuthConfig
from web.live import LiveConfig

CH = "ticks:XAU-USD"


async def test_the_client_resumes_after_a_dropped_connection_with_exactly_the_missed_seqs(
    tmp_path: Path,
) -> None:
    async with live_server(tmp_path, LiveConfig(history_messages=500)) as s:
        await s.ticks(range(1, 11))
        await s.seq_reached(CH, 10)
        client = LiveClient(s.url, [CH], reconnect_min_ms=10, reconnect_max_ms=50)
        seen: list[dict[str, Any]] = []
        stream = client.messages()
        seen.append(await anext(stream))  # the snapshot
        await s.ticks(range(11, 21))
        while client.seqs[CH] < 20:
            seen.append(await anext(stream))
        for server_side in list(s.hub.clients):  # drop the connection from the server's side
            server_side.kill("test: dropped")
        await s.until(lambda: not s.hub.clients)
        await s.ticks(range(21, 121))  # 100 updates while the client is away
        await s.seq_reached(CH, 120)
        while client.seqs.get(CH, 0) < 120:
            seen.append(await anext(stream))
        await stream.aclose()
    assert client.connects == 2
    assert client.gaps == 0
    kinds = [m["type"] for m in seen]
    assert kinds.count("snapshot") == 1
    assert kinds.count("subscribed") == 1
    resumed = next(m for m in seen if m["type"] == "subscribed")
    assert (resumed["seq"], resumed["recovered"], resumed["missed"]) == (20, True, 100)
    updates = [m["seq"] for m in seen if m["type"] == "update"]
    assert updates == list(range(11, 121))  # each once, none missing


async def test_the_client_stops_with_a_clear_error_when_refused(tmp_path: Path) -> None:
    auth = AuthConfig(api_keys=("right",), private_symbols=frozenset({"XAU-USD"}))
    async with live_server(tmp_path, LiveConfig(), auth=auth) as s:
        await s.ticks(range(1, 2))
        await s.seq_reached(CH, 1)
        with pytest.raises(LiveError, match="unauthorized"):
            async for _ in LiveClient(s.url, [CH]).messages():
                pass
        with pytest.raises(LiveError, match="refused the credentials"):
            async for _ in LiveClient(s.url, [CH], api_key="wrong").messages():
                pass
        got = LiveClient(s.url, [CH], api_key="right").messages()
        assert (await anext(got))["type"] == "snapshot"
        await got.aclose()


async def test_tail_prints_live_prices(service: Service) -> None:
    await wait_for_prices(service, METALS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pricestream", "tail", "XAU-USD", "--url", service.url,
        "--count", "3", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 3  # the snapshot, then 2 updates
    assert "connected; following ticks:XAU-USD" in err.decode()
    for line in lines:
        assert "XAU-USD" in line
        assert " bid " in line
        assert " price " in line


async def test_tail_against_a_dead_address_says_it_is_connecting_and_why_it_gave_up() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pricestream", "tail", "XAU-USD", "--url",
        f"http://127.0.0.1:{port}/", "--attempts", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert not out
    assert f"connecting to ws://127.0.0.1:{port}/ws" in text
    assert "cannot reach" in text
    assert "retrying in" in text
    assert "gave up" in text
    assert "Connect call failed" in text or "refused" in text.lower(), text
