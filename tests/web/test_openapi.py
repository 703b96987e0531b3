"""``/openapi.json``: in step with the router, and a schemathesis run against the real service."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from render.service import RenderConfig
from stream.bus.memory import MemoryBus
from stream.store.sqlite import SqliteStore
from tests.conftest import embedded_service
from web.app import make_app, make_health_app
from web.auth import AuthConfig
from web.openapi import NOT_DOCUMENTED, document, routed_paths

#: Examples per operation and phase (the stateful phase: scenarios, below): about 1,000
#: requests, some 40 s here.
MAX_EXAMPLES = 20
PHASES = "examples,coverage,fuzzing,stateful"
SCHEMATHESIS_TIMEOUT_S = 100
#: The event stream never ends: schemathesis reads an event stream until it has
#: ``max-stream-events`` events or ``request-timeout`` has passed in all. A stream slowed by a
#: small ``max_hz`` brings few events, so its bound is the timeout: short here. The stateful
#: phase's examples are scenarios: chains of calls along the document's links.
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/api/v1/stream"
request-timeout = 2
max-stream-events = 5

[phases.stateful.generation]
max-examples = 40
"""
#: The stateful phase's summary: how many scenarios ran and how many links they followed.
STATEFUL_SUMMARY = re.compile(
    r"Stateful \(in .*?Scenarios: +(\d+)"
    r".*?API Links: +(\d+) covered / \d+ selected / (\d+) total",
    re.DOTALL,
)
API_KEY = "k-schemathesis"
#: Rejected rows for ``/api/v1/deadletters`` to page through: more than most pages hold, so
#: its ``next`` links to a next page. The vendor's name sorts before "simulator", so the link
#: from the first of ``/api/v1/vendors`` finds them too.
DEAD_LETTERS = 400
VENDORS = """
[[vendors]]
name = "replay"
kind = "replay"
path = "{tape}"
speed = 0

[[vendors]]
name = "simulator"
kind = "simulator"
seed = 7
rate_hz = 20.0
stale_after_ms = 3000
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


def _links(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (operation, link) of ``doc``."""
    return [
        (operation, link)
        for item in doc["paths"].values()
        for operation in item.values()
        for answer in operation["responses"].values()
        for link in answer.get("links", {}).values()
    ]


@pytest.mark.parametrize(
    ("paths", "some_links"),
    [
        (None, {("listSymbols", "getLatest"), ("getLatest", "getCandles"),
                ("listSymbols", "getChart"), ("listDeadLetters", "listDeadLetters"),
                ("listVendors", "listDeadLetters")}),
        ({"/api/v1/symbols", "/api/v1/symbols/{symbol}/latest"}, {("listSymbols", "getLatest")}),
        ({"/charts/{symbol}.{fmt}", "/snapshots/{symbol}.{fmt}", "/healthz"}, set()),
    ],
)  # fmt: skip
def test_links_lead_only_to_documented_operations_and_their_parameters(
    paths: set[str] | None, some_links: set[tuple[str, str]]
) -> None:
    """A process documents only what it routes, so links to the rest are left out."""
    doc = document(paths)
    parameters = {
        operation["operationId"]: {p["name"] for p in operation.get("parameters", [])}
        for item in doc["paths"].values()
        for operation in item.values()
    }
    links = _links(doc)
    for operation, link in links:
        assert link["operationId"] in parameters, (operation["operationId"], link)
        assert set(link["parameters"]) <= parameters[link["operationId"]], link
    assert {(operation["operationId"], link["operationId"]) for operation, link in links} >= (
        some_links
    )
    assert bool(links) == bool(some_links)


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
    """Every phase, stateful included, and every check but ``positive_data_acceptance``: some
    rules join two parameters (a chart's ``res`` depends on its ``range``; ``start_ms`` must be
    before ``end_ms``), which OpenAPI 3.0 cannot express; those requests get a documented 400
    whose message names the rule.

    The stateful phase chains calls along the document's links, with an API key, so
    ``/api/v1/deadletters`` answers (and pages through a replayed tape's rejected rows) rather
    than 401. The rate limit is off here: with it, most requests would get a (documented) 429
    and test nothing behind it. ``tests/web/test_middleware.py`` tests the limit.
    """
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)  # read from the cwd
    tape = tmp_path / "tape.csv"
    tape.write_text(
        "symbol,ts_ms,bid,ask,price\n"
        + "".join(
            f"XAU-USD,{1_700_000_000_000 + i},2001.0,2000.5,2000.7\n" for i in range(DEAD_LETTERS)
        )
    )  # crossed quotes: every row is rejected
    config = tmp_path / "vendors.toml"
    config.write_text(VENDORS.format(tape=tape))
    har = tmp_path / "schemathesis.har"
    async with embedded_service(
        tmp_path / "data",
        config=config,
        http={"rate_limit_per_s": 0},
        auth={"api_keys": API_KEY},
    ) as service:
        await _wait_for_prices_and_dead_letters(service.url)
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("st")),
            "run",
            service.url + "openapi.json",
            f"--phases={PHASES}",
            "--checks=all",
            "--exclude-checks=positive_data_acceptance",
            f"--header=X-API-Key: {API_KEY}",
            f"--max-examples={MAX_EXAMPLES}",
            "--seed=1",
            # one worker: with two threads CPython 3.11's ast.parse (hypothesis describing a
            # strategy) now and then fails with "AST constructor recursion depth mismatch"
            "--workers=1",
            "--no-shrink",
            "--request-timeout=20",
            "--no-color",
            "--report=har",
            f"--report-har-path={har}",
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
    assert proc.returncode == 0, text[-30_000:]
    assert "Tested: 11" in text, text[-2_000:]
    stateful = STATEFUL_SUMMARY.search(text)
    assert stateful is not None, text[-3_000:]
    scenarios, covered, total = map(int, stateful.groups())
    assert scenarios > 0, stateful[0]
    assert covered > 0, stateful[0]
    assert total >= len(_links(document())), stateful[0]
    assert _dead_letters_read(har) > 0, "the API key did not open /api/v1/deadletters"


def _dead_letters_read(har: Path) -> int:
    """How many dead letters the run's pages held in all: none if its credentials were refused."""
    read = 0
    for entry in json.loads(har.read_text())["log"]["entries"]:
        answer = entry["response"]
        if (
            urlsplit(entry["request"]["url"]).path == "/api/v1/deadletters"
            and answer["status"] == 200
        ):
            read += len(json.loads(answer["content"]["text"])["letters"])
    return read


async def _wait_for_prices_and_dead_letters(url: str) -> None:
    headers = {"X-API-Key": API_KEY}
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(100):
            async with http.get(url + "api/v1/symbols") as resp:
                symbols = len(await resp.json())
            async with http.get(url + "api/v1/deadletters", params={"limit": "1000"}) as resp:
                letters = len((await resp.json())["letters"])
            if symbols >= 4 and letters >= DEAD_LETTERS:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{symbols} symbols and {letters} dead letters")


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
