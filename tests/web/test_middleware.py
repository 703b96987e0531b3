"""Request ids, access logs, rate limits, CORS, size limits and headers, over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stream.bus.memory import MemoryBus
from stream.store.sqlite import SqliteStore
from tests.conftest import Service
from web.app import make_app, make_health_app
from web.middleware import API_CSP, HttpOptions, TokenBuckets

SHOP = "https://shop.example.com"


async def serve(tmp_path: Path, options: HttpOptions) -> AsyncIterator[TestServer]:
    store = await SqliteStore.open(tmp_path / "s.db")
    try:
        server = TestServer(make_app(store=store, bus=MemoryBus(), http=options), host="127.0.0.1")
        await server.start_server()
        try:
            yield server
        finally:
            await server.close()
    finally:
        await store.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    options = HttpOptions(rate_limit_per_s=0.5, rate_limit_burst=3, cors_origins=(SHOP,))
    async for s in serve(tmp_path, options):
        yield s


# -- the token buckets: a pure table --------------------------------------------------------


@pytest.mark.parametrize(
    ("times_s", "waits_s"),
    [
        ([0, 0, 0], [0, 0, 0]),  # the burst
        ([0, 0, 0, 0], [0, 0, 0, 0.5]),  # one over: a token comes in 1/rate s
        ([0, 0, 0, 0.25], [0, 0, 0, 0.25]),
        ([0, 0, 0, 0.5, 0.5], [0, 0, 0, 0, 0.5]),
        ([0, 0, 0, 100, 100, 100, 100], [0, 0, 0, 0, 0, 0, 0.5]),  # refilled to the burst only
    ],
)
def test_token_bucket_answers_how_long_to_wait(times_s: list[float], waits_s: list[float]) -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    assert [buckets.take("a", t) for t in times_s] == pytest.approx(waits_s)


def test_token_buckets_are_per_client_and_bounded() -> None:
    buckets = TokenBuckets(rate_per_s=1, burst=1, max_keys=2)
    assert buckets.take("a", 0) == 0
    assert buckets.take("b", 0) == 0
    assert buckets.take("a", 0) == 1  # a's bucket is empty, b's untouched
    assert buckets.take("c", 0) == 0  # b, the least recently used, goes
    assert len(buckets) == 2
    assert buckets.take("b", 0) == 0  # a fresh bucket again


# -- over HTTP ------------------------------------------------------------------------------


async def test_a_well_formed_request_id_is_kept_and_logged_with_the_access_line(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/healthz")
        async with http.get(url, headers={"X-Request-Id": "trace-42.a:b_c"}) as resp:
            assert resp.headers["X-Request-Id"] == "trace-42.a:b_c"
        async with http.get(url, headers={"X-Request-Id": "bad id\\with spaces"}) as resp:
            fresh = resp.headers["X-Request-Id"]
        async with http.get(url) as resp:
            other = resp.headers["X-Request-Id"]
    assert len(fresh) == 32
    assert len(other) == 32
    assert fresh != other
    lines = [r for r in caplog.records if r.name == "web.access"]
    assert [getattr(r, "request_id", None) for r in lines] == ["trace-42.a:b_c", fresh, other]
    assert all(getattr(r, "status", None) == 200 for r in lines)
    assert all(getattr(r, "path", None) == "/healthz" for r in lines)
    assert "trace-42.a:b_c" in lines[0].getMessage()


async def test_json_log_lines_carry_the_request_id(server: TestServer) -> None:
    from pricestream.logs import JsonFormatter
    from web.middleware import RequestIdFilter

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("web.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with aiohttp.ClientSession() as http:
            url = server.make_url("/api/v1/symbols")
            async with http.get(url, headers={"X-Request-Id": "abc123"}) as resp:
                assert resp.status == 200
    finally:
        logger.removeHandler(handler)
    import orjson

    line = orjson.loads(records[-1])
    assert line["request_id"] == "abc123"
    assert line["logger"] == "web.access"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0


async def test_past_the_burst_a_client_gets_429_with_retry_after(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/api/v1/symbols")
        statuses = []
        for _ in range(4):
            async with http.get(url) as resp:
                statuses.append(resp.status)
                body = await resp.json()
                retry = resp.headers.get("Retry-After")
        # health checks and metrics stay reachable for a limited client
        async with http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 200
        async with http.get(server.make_url("/metrics")) as resp:
            metrics = await resp.text()
    assert statuses == [200, 200, 200, 429]
    assert retry == "2"  # one token every 2 s
    assert body["error"]["status"] == 429
    assert "at most 0.5 a second" in body["error"]["message"]
    assert "pricestream_http_rate_limited_total 1.0" in metrics


async def test_forwarded_clients_are_limited_apart_only_when_trusted(tmp_path: Path) -> None:
    for trusted, expected in ((True, [200, 200]), (False, [200, 429])):
        options = HttpOptions(rate_limit_per_s=0.1, rate_limit_burst=1,
                              trust_forwarded_for=trusted)  # fmt: skip
        async for server in serve(tmp_path / str(trusted), options):
            statuses = []
            async with aiohttp.ClientSession() as http:
                for client in ("10.0.0.1", "10.0.0.2"):
                    headers = {"X-Forwarded-For": f"1.2.3.4, {client}"}
                    async with http.get(server.make_url("/api/v1/vendors"), headers=headers) as r:
                        statuses.append(r.status)
            assert statuses == expected


async def test_a_declared_body_over_the_limit_is_413(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/api/v1/symbols")
        async with http.get(url, data=b"x" * (64 * 1024 + 1)) as resp:
            assert resp.status == 413
            assert "65536 bytes" in (await resp.json())["error"]["message"]
        async with http.get(url, data=b"x" * 1024) as resp:
            assert resp.status == 200


async def test_an_oversized_url_is_a_clear_4xx(server: TestServer) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/api/v1/symbols?x=" + "a" * 20_000)) as resp,
    ):
        assert resp.status in (400, 414)


async def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(
    server: TestServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/api/v1/vendors")
        preflight = {"Origin": SHOP, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "x-request-id"}  # fmt: skip
        async with http.options(url, headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == SHOP
            assert "GET" in resp.headers["Access-Control-Allow-Methods"]
            assert "X-Request-Id" in resp.headers["Access-Control-Allow-Headers"]
        async with http.get(url, headers={"Origin": SHOP}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == SHOP
            assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]
            assert "Origin" in resp.headers["Vary"]


async def test_another_origin_gets_no_cors_headers_and_a_403_preflight(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        url = server.make_url("/api/v1/vendors")
        evil = "https://evil.example.net"
        preflight = {"Origin": evil, "Access-Control-Request-Method": "GET"}
        async with http.options(url, headers=preflight) as resp:
            assert resp.status == 403
            assert "http.cors_origins" in (await resp.json())["error"]["message"]
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with http.get(url, headers={"Origin": evil}) as resp:
            assert resp.status == 200
            assert "Access-Control-Allow-Origin" not in resp.headers
        writes = {"Origin": SHOP, "Access-Control-Request-Method": "DELETE"}
        async with http.options(url, headers=writes) as resp:
            assert resp.status == 403
            assert "GET, HEAD, OPTIONS" in (await resp.json())["error"]["message"]


async def test_api_answers_carry_security_headers_and_the_page_keeps_its_csp(
    service: Service,
) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("api/v1/symbols", "api/v1/nothing-here", "healthz", "metrics"):
            async with http.get(service.url + path) as resp:
                assert resp.headers["Content-Security-Policy"] == API_CSP, path
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert len(resp.headers["X-Request-Id"]) == 32
        async with http.get(service.url) as resp:
            csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    async with aiohttp.ClientSession() as http, http.ws_connect(service.ws_url) as ws:
        assert len(ws._response.headers["X-Request-Id"]) == 32


def test_log_records_written_while_handling_a_request_carry_its_id() -> None:
    from web.middleware import RequestIdFilter, current_request_id

    record = logging.makeLogRecord({"msg": "store slow"})
    token = current_request_id.set("r-1")
    try:
        assert RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)
    assert getattr(record, "request_id", None) == "r-1"
    outside = logging.makeLogRecord({"msg": "status"})
    RequestIdFilter().filter(outside)
    assert not hasattr(outside, "request_id")


async def test_an_unexpected_error_is_a_json_500_naming_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> str | None:
        raise RuntimeError("the readiness check broke")

    caplog.set_level(logging.INFO)
    app = make_health_app(roles=("ingest",), ready=broken)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/readyz"), headers={"X-Request-Id": "oops-1"}) as resp,
    ):
        assert resp.status == 500
        assert resp.headers["X-Request-Id"] == "oops-1"
        assert "request id oops-1" in (await resp.json())["error"]["message"]
    failed = [r for r in caplog.records if r.name == "web.middleware"]
    assert failed
    assert failed[0].exc_info is not None
    assert "the readiness check broke" in str(failed[0].exc_info[1])


@pytest.mark.parametrize("access", [True, False])
def test_access_lines_can_be_turned_off(access: bool) -> None:
    from pricestream import logs

    root = logging.getLogger()
    kept = (root.handlers[:], root.level, logging.getLogger("web.access").level)
    try:
        logs.configure(level="info", fmt="json", access=access)
        assert logging.getLogger("web.access").isEnabledFor(logging.INFO) is access
        assert logging.getLogger("web.middleware").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], root.level = kept[0], kept[1]
        logging.getLogger("web.access").setLevel(kept[2])
