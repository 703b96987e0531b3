"""Fuzzing the running service (issue 12): arbitrary bytes in every header and query parameter
the service reads and in every path parameter, and arbitrary websocket frames, over real sockets.

Every HTTP request gets a complete answer that is not a 5xx, no websocket is closed with 1011
(internal error), and afterwards nothing is left in the hub: no client (websocket or event
stream), and no update handed to anyone or conflated or dropped while no one is connected.

The whole embedded service (simulator, stream worker, render pools, web) runs in a thread of its
own with its own event loop, so it keeps working while hypothesis runs the examples through
blocking sockets: requests are written byte for byte (client libraries refuse or re-encode what
matters here), and websocket frames go through the ``websockets`` synchronous client. The hub
is read where an operator reads it, on ``/metrics`` (the embedded service does not hand out its
app): ``pricestream_websocket_clients`` is the hub's client count, and a subscriber left in a
channel after its client went would show as updates handed out with no client connected.

Each target runs ``MAX_EXAMPLES`` derandomized examples (a failure reproduces on every run, and
hypothesis prints the smallest example it found and a ``@reproduce_failure`` blob).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import queue
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import embedded_service
from web.auth import sign_hs256

MAX_EXAMPLES = 150
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = "k-fuzz-3f9a1c77"
SECRET = "s" * 32
SHOP = "https://shop.example.com"
#: a private symbol, so credentials are read on its routes and channels
PRIVATE = "XPD-USD"
#: aiohttp's limit on one header line (web.app.ServerLimits.max_field_bytes); a value up to it
MAX_VALUE_BYTES = 8_100


# -- the service, in a thread of its own --------------------------------------------------


@dataclass
class Fuzzed:
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        return {
            m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+) ([0-9.e+-]+)$", text, re.MULTILINE)
        }


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """The embedded service with credentials, a private symbol, CORS and a rate limit that
    reads X-Forwarded-For but refuses nothing."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    started: queue.Queue[int | BaseException] = queue.Queue()
    control: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        control.put((asyncio.get_running_loop(), stop))
        http = {
            "rate_limit_per_s": 1e6,
            "rate_limit_burst": 1_000_000,
            "trust_forwarded_for": True,
            "cors_origins": SHOP,
        }
        auth = {"api_keys": KEY, "jwt_secret": SECRET, "private_symbols": PRIVATE}
        async with embedded_service(data_dir, http=http, auth=auth) as running:
            started.put(running.port)
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # the test thread reports it
            started.put(exc)

    thread = threading.Thread(target=run, name="fuzzed-service", daemon=True)
    thread.start()
    port = started.get(timeout=60)
    if isinstance(port, BaseException):
        raise port
    fuzzed = Fuzzed(port)
    _wait_for_prices(fuzzed)
    try:
        yield fuzzed
    finally:
        loop, stop = control.get(timeout=5)
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def _wait_for_prices(service: Fuzzed) -> None:
    url = f"http://127.0.0.1:{service.port}/api/v1/symbols"
    for _ in range(200):
        with urllib.request.urlopen(url, timeout=10) as resp:
            if len(orjson.loads(resp.read())) >= 3:  # the private one is not listed
                return
        time.sleep(0.05)
    raise AssertionError("no prices")


def assert_nothing_left_in_the_hub(service: Fuzzed) -> None:
    """No client within 10 s, then 20 ticks with nobody to hand them to."""
    clients = -1.0
    for _ in range(200):
        clients = service.metrics()["pricestream_websocket_clients"]
        if clients == 0:
            break
        time.sleep(0.05)
    assert clients == 0, f"{clients:g} clients left in the hub"
    names = ("pricestream_websocket_messages_sent_total", "pricestream_websocket_conflated_total",
             "pricestream_websocket_dropped_total", "pricestream_ticks_in_total")  # fmt: skip
    before = after = service.metrics()
    for _ in range(200):  # until some ticks went through: a leaked subscriber would get them
        time.sleep(0.05)
        after = service.metrics()
        if after["pricestream_ticks_in_total"] >= before["pricestream_ticks_in_total"] + 20:
            break
    else:
        raise AssertionError("no ticks for 10 s: the check would prove nothing")
    assert [after[n] for n in names[:3]] == [before[n] for n in names[:3]], {
        n: (before[n], after[n]) for n in names
    }


# -- raw HTTP ---------------------------------------------------------------------------


def ask(port: int, head: bytes) -> int:
    """Send a request head as given; the answer's status (0: the connection closed first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        with contextlib.suppress(ConnectionError):  # the server may answer before it all went
            sock.sendall(head)
        received = b""
        with contextlib.suppress(ConnectionError):
            while b"\r\n" not in received and (chunk := sock.recv(4_096)):
                received += chunk
    match = re.match(rb"HTTP/1\.[01] ([0-9]{3}) ", received)
    return int(match[1]) if match else 0


def request(target: bytes, *, method: bytes = b"GET", headers: bytes = b"") -> bytes:
    return (
        method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + headers + b"\r\n"
    )  # fmt: skip


def assert_answered(service: Fuzzed, head: bytes) -> None:
    status = ask(service.port, head)
    assert 100 <= status < 500, f"status {status} for {head[:300]!r}"


# -- what is sent ----------------------------------------------------------------------------

#: any bytes, short or up to the header limit (values past it are the parser's 400)
some_bytes = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=1_000, max_size=MAX_VALUE_BYTES),
    st.sampled_from([b"", b" ", b"\xff\xfe", b"\x00", b"\xed\xa0\x80", "é".encode("latin-1")]),
)


def _jwt_like(parts: tuple[bytes, bytes, bytes]) -> bytes:
    return b".".join(base64.urlsafe_b64encode(p).rstrip(b"=") for p in parts)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders take
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)  # fmt: skip
claims: st.SearchStrategy[dict[str, object]] = st.dictionaries(
    st.sampled_from(["sub", "exp", "nbf", "iat", "x"]) | st.text(max_size=8), json_values,
    max_size=5,
)  # fmt: skip
#: tokens that are signed with the service's secret (so their claims are read), or merely look
#: like tokens, or are not
tokens = st.one_of(
    claims.map(lambda c: sign_hs256(c, SECRET.encode()).encode()),
    st.tuples(st.binary(max_size=60), st.binary(max_size=60), st.binary(max_size=40)).map(
        _jwt_like
    ),
    some_bytes,
)
#: values that get past the first check of each header now and then
PLAUSIBLE: dict[str, st.SearchStrategy[bytes]] = {
    "X-API-Key": st.sampled_from([KEY.encode(), KEY.encode() + b"\xff", b"k-"]),
    "Authorization": tokens.map(lambda t: b"Bearer " + t),
    "Last-Event-ID": st.lists(
        st.sampled_from(
            [b"ticks:XAU-USD", b"ticks:XPD-USD", b"candles:XAU-USD:1m", b"x", b""]
        ).flatmap(lambda ch: st.binary(max_size=24).map(lambda seq: ch + b"=" + seq))
        | st.integers(min_value=-1, max_value=2**64).map(lambda n: b"ticks:XAU-USD=%d" % n),
        max_size=70,
    ).map(b",".join),
    "If-None-Match": st.sampled_from([b'"', b'W/"x"', b"*"]),
    "Origin": st.sampled_from([SHOP.encode(), b"null", b"https://evil.example"]),
    "X-Request-Id": st.text("abcXYZ019._:-", min_size=1, max_size=140).map(str.encode),
    "X-Forwarded-For": st.lists(
        st.sampled_from([b"203.0.113.7", b"::1", b"unknown"]) | st.binary(max_size=40), max_size=6
    ).map(b", ".join),
    "Access-Control-Request-Method": st.sampled_from([b"GET", b"DELETE", b"get"]),
}
HEADERS = tuple(PLAUSIBLE)


def header_value(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(some_bytes, PLAUSIBLE[name], st.tuples(PLAUSIBLE[name], some_bytes).map(
        lambda pair: pair[0] + pair[1]
    ))  # fmt: skip


#: (method, target) for every route: each header goes to all of them
WS_UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n"
)
ROUTES: tuple[tuple[bytes, bytes], ...] = (
    (b"GET", b"/api/v1/symbols"),
    (b"GET", b"/api/v1/symbols/XAU-USD/latest"),
    (b"GET", b"/api/v1/symbols/" + PRIVATE.encode() + b"/latest"),
    (b"GET", b"/api/v1/symbols/" + PRIVATE.encode() + b"/candles?res=1m&limit=5"),
    (b"GET", b"/api/v1/deadletters?limit=2"),
    (b"GET", b"/api/v1/vendors"),
    (b"GET", b"/api/v1/stream?channels=ticks:XAU-USD,ticks:" + PRIVATE.encode()),
    (b"GET", b"/charts/XAU-USD.svg?range=1h&w=200&h=100"),
    (b"GET", b"/charts/" + PRIVATE.encode() + b".png?range=1h"),
    (b"GET", b"/snapshots/XAU-USD.json?range=1h"),
    (b"GET", b"/ws"),
    (b"OPTIONS", b"/api/v1/symbols"),
    (b"GET", b"/healthz"),
    (b"GET", b"/openapi.json"),
    (b"GET", b"/"),
)

#: every query parameter each route reads, with values that get past its first check
QUERIES: dict[str, dict[str, list[bytes]]] = {
    "/api/v1/symbols/XAU-USD/candles": {
        "res": [b"1m", b"1s", b"1d"], "limit": [b"1", b"5000", b"5001", b"0"],
        "start_ms": [b"0", b"9007199254740992", b"1790000000000"],
        "end_ms": [b"1", b"9007199254740993", b"1795000000000"],
    },
    "/api/v1/deadletters": {
        "limit": [b"1", b"1000"], "before": [b"0", b"1-1", b"abc"],
        "vendor": [b"simulator", b""], "source": [b"simulator"], "reason": [b"late", b"future"],
    },
    "/charts/XAU-USD.png": {
        "range": [b"1h", b"1d", b"5y"], "res": [b"1m", b"1s", b"1d"], "w": [b"200", b"2000"],
        "h": [b"100", b"1200"], "type": [b"area", b"candles"], "theme": [b"light", b"dark"],
    },
    "/snapshots/XAU-USD.csv": {"range": [b"1h", b"1w"], "res": [b"1m", b"1h"]},
    "/api/v1/stream": {
        "channels": [b"ticks:XAU-USD", b"ticks:XAU-USD,candles:XAU-USD:1m", b"ticks:" + b"X" * 70],
        "last_event_id": [b"ticks:XAU-USD=1", b"ticks:XAU-USD=99999999999999999999"],
        "max_hz": [b"1", b"0.001", b"1e308", b"nan", b"inf"],
    },
}  # fmt: skip


def encoded(value: bytes, how: str) -> bytes:
    """A value as it goes into a request target: percent-encoded (any byte reaches the
    service), or raw (the parser's business: spaces, controls, non-ASCII)."""
    if how == "percent":
        return urllib.parse.quote_from_bytes(value, safe="").encode()
    return value


def query_pairs(route: str) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    params = QUERIES[route]
    name = st.sampled_from([n.encode() for n in params]) | st.binary(max_size=12)

    def value_for(n: bytes) -> st.SearchStrategy[bytes]:
        known = params.get(n.decode("latin-1"), [])
        return st.sampled_from(known) | some_bytes if known else some_bytes

    return st.lists(name.flatmap(lambda n: value_for(n).map(lambda v: (n, v))), max_size=8)


# -- HTTP targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", HEADERS)
def test_any_bytes_in_a_header_the_service_reads_get_no_5xx(service: Fuzzed, name: str) -> None:
    @FUZZ
    @given(route=st.sampled_from(ROUTES), value=header_value(name))
    def one(route: tuple[bytes, bytes], value: bytes) -> None:
        method, target = route
        extra = WS_UPGRADE if target == b"/ws" else b""
        head = request(
            target, method=method, headers=extra + name.encode() + b": " + value + b"\r\n"
        )
        assert_answered(service, head)

    one()
    assert_nothing_left_in_the_hub(service)


@pytest.mark.parametrize("route", list(QUERIES))
def test_any_bytes_in_a_query_parameter_get_no_5xx(service: Fuzzed, route: str) -> None:
    auth = b"X-API-Key: " + KEY.encode() + b"\r\n"  # so deadletters reads its parameters

    @FUZZ
    @given(pairs=query_pairs(route), how=st.sampled_from(["percent", "percent", "raw"]))
    def one(pairs: list[tuple[bytes, bytes]], how: str) -> None:
        query = b"&".join(encoded(n, how) + b"=" + encoded(v, how) for n, v in pairs)
        assert_answered(service, request(route.encode() + b"?" + query, headers=auth))

    one()
    assert_nothing_left_in_the_hub(service)


PATHS = (
    b"/api/v1/symbols/{}/latest",
    b"/api/v1/symbols/{}/candles",
    b"/charts/{}.png",
    b"/charts/XAU-USD.{}",
    b"/snapshots/{}.csv",
    b"/snapshots/XAU-USD.{}",
    b"/static/{}",
    b"/{}",
)


def test_any_bytes_in_a_path_parameter_get_no_5xx(service: Fuzzed) -> None:
    @FUZZ
    @given(
        path=st.sampled_from(PATHS),
        value=st.sampled_from([b"XAU-USD", b"xau-usd", b"..", b"../../etc/passwd"]) | some_bytes,
        how=st.sampled_from(["percent", "percent", "raw"]),
    )
    def one(path: bytes, value: bytes, how: str) -> None:
        assert_answered(service, request(path.replace(b"{}", encoded(value, how))))

    one()
    assert_nothing_left_in_the_hub(service)


# -- websocket frames -----------------------------------------------------------------------

CHANNELS = ["ticks:XAU-USD", "ticks:" + PRIVATE, "candles:XAU-USD:1m", "candles:XAU-USD:1x",
            "ticks:", "", "ticks:XAU-USD:1m"]  # fmt: skip
messages = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["subscribe", "unsubscribe"])},
        optional={
            "channels": st.lists(st.sampled_from(CHANNELS) | st.text(max_size=30), max_size=70)
            | json_values,
            "since": st.dictionaries(st.sampled_from(CHANNELS), json_values, max_size=3)
            | json_values,
            "max_hz": st.floats(allow_nan=False) | json_values,
            "extra": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"op": st.just("auth")},
        optional={
            "api_key": st.sampled_from([KEY]) | st.text() | json_values,
            "token": tokens.map(lambda t: t.decode("latin-1")) | json_values,
        },
    ),
    st.fixed_dictionaries({"op": st.sampled_from(["ping", "PING", "", "close"]) | json_values}),
    json_values,
).map(lambda m: orjson.dumps(m).decode())
#: JSON that JSON encoders do not write: huge and non-finite numbers, deep nesting, duplicates
TRICKY = [
    '{"op":"subscribe","channels":["ticks:XAU-USD"],"since":{"ticks:XAU-USD":1' + "0" * 400 + "}}",
    '{"op":"subscribe","channels":["ticks:XAU-USD"],"since":{"ticks:XAU-USD":1e400}}',
    '{"op":"subscribe","channels":["ticks:XAU-USD"],"max_hz":NaN}',
    '{"op":"subscribe","op":"auth","channels":["ticks:XAU-USD"]}',
    '{"op":"subscribe","channels":' + "[" * 5_000 + "]" * 5_000 + "}",
    '{"op":"subscribe","channels":["ticks:XAU-USD"]',
    '{"op":"subscribe","channels":["\ud800"]}',
]
text_frames = st.one_of(
    messages,
    st.sampled_from(TRICKY),
    st.text(max_size=200),
    st.text(min_size=10_000, max_size=70_000),
)
binary_frames = st.one_of(
    messages.map(str.encode), st.binary(max_size=200), st.binary(min_size=10_000, max_size=70_000)
)


def exchange(service: Fuzzed, frames: list[str | bytes], headers: dict[str, str]) -> None:
    """Send ``frames``, read what comes back for a moment, close; never a 1011."""
    status, code = 101, None
    try:
        with connect(service.ws_url, additional_headers=headers, open_timeout=10,
                     close_timeout=5, max_size=None) as ws:  # fmt: skip
            for frame in frames:
                ws.send(frame)
            deadline = time.monotonic() + 0.05  # subscribed channels send all the time
            with contextlib.suppress(TimeoutError):
                while time.monotonic() < deadline:
                    ws.recv(timeout=0.01)
    except InvalidStatus as refused:
        status = refused.response.status_code
    except ConnectionClosed as closed:  # the server closed it: 1009 for a message too large...
        code = closed.rcvd.code if closed.rcvd is not None else None
    else:
        code = ws.close_code
    assert status < 500, f"handshake answered {status}"
    assert code != 1011, f"closed with 1011 (internal error) after {frames!r:.300}"


#: header bytes are fuzzed above; these open the connection with or without credentials
ws_headers: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.just({"X-API-Key": KEY}),
    claims.map(lambda c: {"Authorization": "Bearer " + sign_hs256(c, SECRET.encode())}),
)


@pytest.mark.parametrize(("kind", "frames"), [("text", text_frames), ("binary", binary_frames)])
def test_any_websocket_frames_close_no_connection_with_an_internal_error(
    service: Fuzzed, kind: str, frames: st.SearchStrategy[str | bytes]
) -> None:
    @FUZZ
    @given(sent=st.lists(frames, min_size=1, max_size=5), headers=ws_headers)
    def one(sent: list[str | bytes], headers: dict[str, str]) -> None:
        exchange(service, sent, headers)

    one()
    assert_nothing_left_in_the_hub(service)
