"""What the HTTP middleware costs per request: request ids, the JSON access line, rate limit, CORS.

Two apps answer ``GET /healthz`` over real loopback HTTP/1.1 keep-alive connections from an
aiohttp client in the same process (one core, uvloop):

- baseline: an aiohttp app with the same handler and ``json_errors`` only (what the service
  had before ``web.middleware``);
- quiet: ``web.app.make_health_app`` with the middleware, a rate limit too high to refuse
  anything and a CORS allow-list, access lines off (``[log] access = false``);
- service: the same with the ``web.access`` line formatted as JSON (the production format)
  and written to /dev/null.

Rounds alternate between the two so that the shared machine's noise falls on both; the medians
are printed as a markdown table on stdout. Run ``python bench/middleware.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import logging
import os
import statistics
import time

import aiohttp
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.harness import command_line, header, machine, make_parser, say, table
from pricestream.logs import JsonFormatter
from web import api, middleware
from web.app import make_health_app
from web.middleware import HttpOptions, RequestIdFilter


def baseline_app() -> web.Application:
    app = web.Application(middlewares=[api.json_errors])
    app.router.add_get("/healthz", api.healthz)
    return app


def service_app() -> web.Application:
    app = make_health_app(roles=("ingest",), ready=lambda: None)
    options = HttpOptions(rate_limit_per_s=1e6, rate_limit_burst=1_000_000,
                          cors_origins=("https://shop.example.com",))  # fmt: skip
    # make_health_app installs the defaults; this bench wants the limit and CORS on as well
    app.middlewares.clear()
    app.middlewares.append(api.json_errors)
    app.on_response_prepare.clear()
    middleware.install(app, options)
    return app


async def round_trip(app: web.Application, requests: int, connections: int) -> float:
    """Requests per second for ``requests`` GETs over ``connections`` keep-alive connections."""
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/healthz"))
        conn = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=conn) as http:

            async def worker(n: int) -> None:
                for _ in range(n):
                    async with http.get(url) as resp:
                        await resp.read()
                        assert resp.status == 200

            await worker(50)  # warm up
            share = requests // connections
            started = time.perf_counter()
            await asyncio.gather(*(worker(share) for _ in range(connections)))
            return share * connections / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access = logging.getLogger("web.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    variants = (("baseline", baseline_app, logging.INFO), ("quiet", service_app, logging.WARNING),
                ("service", service_app, logging.INFO))  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for i in range(args.rounds):
        for name, make, level in variants:
            access.setLevel(level)
            rate = await round_trip(make(), args.requests, args.connections)
            rates[name].append(rate)
            say(f"round {i + 1}: {name} {rate:,.0f} requests/s")
    base = statistics.median(rates["baseline"])
    quiet = statistics.median(rates["quiet"])
    ours = statistics.median(rates["service"])
    facts = machine(libraries=("uvloop", "aiohttp"), load_at="end")
    lines = header("HTTP middleware", command=command_line(__file__), facts=facts)
    rows = [
        ["baseline: json_errors only", f"{base:,.0f}", f"{1e6 / base:.0f}"],
        ["service, access lines off", f"{quiet:,.0f}", f"{1e6 / quiet:.0f}"],
        ["service: the same and a JSON access line", f"{ours:,.0f}", f"{1e6 / ours:.0f}"],
    ]
    head = ["app", "requests/s (median of rounds)", "µs per request, client included"]
    lines += [
        "The machine is shared: other engineers work on it at the same time.",
        "",
        *table(head, rows, align="lll"),
        "",
        f"Middleware cost: {1e6 / quiet - 1e6 / base:.0f} µs per request, "
        f"{1e6 / ours - 1e6 / quiet:.0f} µs more for the access line.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    parser = make_parser(
        __file__,
        __doc__,
        examples=[
            ("", "5 rounds of 20,000 requests"),
            ("--requests 2000 --rounds 1", "a short run"),
        ],
    )
    parser.add_argument("--requests", type=int, default=20_000, help="per round (default 20000)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per app")
    uvloop.run(main(parser.parse_args()))
