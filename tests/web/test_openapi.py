"""``/openapi.json``: in step with the router, and a schemathesis run against the real service."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from render.service import RenderConfig
from stream.bus.memory import MemoryBus
from stream.store.sqlite import SqliteStore
from tests.conftest import embedded_service
from web.app import make_app, make_health_app
from web.auth import AuthConfig
from web.openapi import NOT_DOCUMENTED, document, routed_paths

#: Examples per operation and phase: about 500 requests, a few seconds here.
MAX_EXAMPLES = 20
SCHEMATHESIS_TIMEOUT_S = 100
#: The event stream never ends: schemathesis reads an event stream until it has
#: ``max-stream-events`` events or ``request-timeout`` has passed in all. A stream slowed by a
#: small ``max_hz`` brings few events, so its bound is the timeout: short here.
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/api/v1/stream"
request-timeout = 2
max-stream-events = 5
"""


async def test_every_route_is_documented_and_every_documented_path_is_routed(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        app = make_app(store=store, bus=MemoryBus(), render=RenderConfig(cache_dir=None))
        routed = routed_paths(app)
        methods = {
            str(route.resource.canonical): route.method
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    finally:
        await store.close()
    documented = document()["paths"]
    assert routed >= NOT_DOCUMENTED
    assert routed - NOT_DOCUMENTED == set(documented)
    for path, operations in documented.items():
        assert set(operations) == {methods[path].lower()}, path


async def test_a_process_of_other_roles_documents_only_what_it_routes() -> None:
    app = make_health_app(roles=("stream",), ready=lambda: None)
    assert set(document(routed_paths(app))["paths"]) == {"/healthz", "/readyz", "/metrics"}


async def test_the_service_serves_its_document(tmp_path: Path) -> None:
    async with (
        embedded_service(tmp_path / "data") as service,
        aiohttp.ClientSession() as http,
        http.get(service.url + "openapi.json") as resp,
    ):
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.0")
    assert "/api/v1/symbols/{symbol}/candles" in doc["paths"]
    assert "/charts/{symbol}.{fmt}" in doc["paths"]
    limit = doc["paths"]["/api/v1/deadletters"]["get"]["parameters"][0]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 1_000)
    stream = doc["paths"]["/api/v1/stream"]["get"]
    assert {(p["in"], p["name"]) for p in stream["parameters"]} == {
        ("query", "channels"), ("query", "max_hz"), ("query", "last_event_id"),
        ("header", "Last-Event-ID"),
    }  # fmt: skip
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}


async def test_schemathesis_finds_no_failures_against_the_running_service(tmp_path: Path) -> None:
    """Every check but ``positive_data_acceptance``: some rules join two parameters (a chart's
    ``res`` depends on its ``range``; ``start_ms`` must be before ``end_ms``), which OpenAPI 3.0
    cannot express; those requests get a documented 400 whose message names the rule.

    The rate limit is off here: with it, most requests would get a (documented) 429 and test
    nothing behind it. ``tests/web/test_middleware.py`` tests the limit.
    """
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)  # read from the cwd
    async with embedded_service(tmp_path / "data", http={"rate_limit_per_s": 0}) as service:
        await _wait_for_prices(service.url)
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("st")),
            "run",
            service.url + "openapi.json",
            "--checks=all",
            "--exclude-checks=positive_data_acceptance",
            f"--max-examples={MAX_EXAMPLES}",
            "--seed=1",
            "--workers=2",
            "--no-shrink",
            "--request-timeout=20",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), SCHEMATHESIS_TIMEOUT_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6_000:]
    assert "Tested: 11" in text, text[-2_000:]


async def _wait_for_prices(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(url + "api/v1/symbols") as resp:
                if len(await resp.json()) >= 4:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("no prices")


async def test_what_schemathesis_found_stays_fixed(tmp_path: Path) -> None:
    """A 405 names the allowed methods in ``Allow`` (RFC 9110); an empty number is a 400."""
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        auth = AuthConfig(api_keys=("k-openapi",))  # /api/v1/deadletters needs a key
        app = make_app(store=store, bus=MemoryBus(), render=RenderConfig(cache_dir=None), auth=auth)
        async with (
            TestServer(app, host="127.0.0.1") as server,
            aiohttp.ClientSession(headers={"X-API-Key": "k-openapi"}) as http,
        ):
            async with http.request("TRACE", server.make_url("/api/v1/deadletters")) as resp:
                assert resp.status == 405
                assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
                assert "use GET, HEAD" in (await resp.json())["error"]["message"]
            for path in ("/api/v1/deadletters?limit=", "/charts/XAU-USD.png?w=",
                         "/charts/XAU-USD.png?range=", "/snapshots/XAU-USD.csv?res="):  # fmt: skip
                async with http.get(server.make_url(path)) as resp:
                    assert resp.status == 400, path
                    assert "got ''" in (await resp.json())["error"]["message"], path
    finally:
        await store.close()
