"""``pricestream``: the command line. It assembles the roles; nothing imports it."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.metadata
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pricestream import logs
from pricestream.roles import ROLES, Running, run_roles
from pricestream.settings import ConfigError, Settings
from stream.contract import PricestreamError

DESCRIPTION = """\
Pricestream: real-time metals prices. Vendor ticks in; rolling OHLC candles, a websocket feed,
an HTTP API and a live chart page out."""

RUN_EPILOG = """\
examples:
  pricestream run                         # simulated metals feeds, open the printed URL
  pricestream run --port 9000 --data-dir /var/lib/pricestream
  pricestream run --config pricestream.toml
  pricestream run --replay ticks.csv --speed 0   # replay recorded ticks as fast as possible

Settings come from defaults, then --config FILE (TOML), then PRICESTREAM_<SECTION>_<KEY>
environment variables (e.g. PRICESTREAM_STREAM_GRACE_MS=5000), then these flags."""

ROLE_HELP = {
    "ingest": "run the collectors: vendor ticks to the bus",
    "stream": "run a stream worker: ticks to candles in the store and updates on the bus",
    "web": "run a web node: HTTP API, websockets and the live page, fed from the bus",
    "render": "run a render node: /charts and /snapshots from its own worker processes",
}

ROLE_EPILOG = """examples:
  pricestream {role} --config pricestream.toml
  PRICESTREAM_BUS_BOOTSTRAP=kafka:9092 pricestream {role} --config pricestream.toml

One role per process needs a shared bus and store: [bus] kind = "kafka" and, for the store,
[storage] kind = "mongo". Run as many processes of a role as you need (compose.yaml shows
how); stream workers share the ticks partitions as one consumer group. Settings come from
defaults, then --config FILE (TOML), then PRICESTREAM_<SECTION>_<KEY> environment variables,
then these flags."""


TAIL_EPILOG = """\
examples:
  pricestream tail XAU-USD
  pricestream tail XAU-USD XAG-USD --url http://prices.internal:8080/ --max-hz 2

Private symbols need credentials: PRICESTREAM_API_KEY or PRICESTREAM_TOKEN (a JWT) from the
environment (never on the command line, where other users can see them)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricestream", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"pricestream {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run every role in one process (embedded bus and store, simulated feeds, web page)",
        description="Run ingest, stream, web and render in one process on the embedded bus and "
        "store, with simulated metals feeds unless vendors are configured.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument(
        "--port", type=int, help="port to listen on (default 8080; 0 picks a free one)"
    )
    run.add_argument(
        "--data-dir", type=Path, help="where the store keeps its file (default ./data)"
    )
    run.add_argument("--config", type=Path, help="a TOML settings file")
    run.add_argument("--no-simulator", action="store_true", help="do not start the simulated feeds")
    run.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="replay recorded ticks (CSV or JSON lines) instead of the configured vendors",
    )
    run.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed factor: 1 = as recorded, 10 = ten times faster, 0 = as fast as possible",
    )
    tail = sub.add_parser(
        "tail",
        help="show live prices from a running service in the terminal",
        description="Follow ticks of SYMBOLs from a running service; resumes after reconnects.",
        epilog=TAIL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("symbols", nargs="+", metavar="SYMBOL", help="e.g. XAU-USD")
    tail.add_argument("--url", default="http://127.0.0.1:8080/", help="the service's address")
    tail.add_argument("--max-hz", type=float, help="at most this many lines a second per symbol")
    tail.add_argument("--count", type=int, help="stop after printing this many lines")
    tail.add_argument(
        "--attempts",
        type=int,
        default=5,
        help="give up after this many failed connection attempts in a row (default 5; 0: never)",
    )
    for role in ROLES:
        one = sub.add_parser(
            role,
            help=ROLE_HELP[role],
            description=f"Run the {role} role on its own (a shared Kafka bus and store).",
            epilog=ROLE_EPILOG.format(role=role),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        one.add_argument("--config", type=Path, help="a TOML settings file")
        one.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        one.add_argument(
            "--port", type=int, help="port for the API, or health checks (default 8080)"
        )
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("pricestream")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, with its usage, not the top-level one
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "tail":
        return _tail(args)
    overrides: dict[str, dict[str, object]] = {}
    if args.host is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "data_dir", None) is not None:
        overrides.setdefault("storage", {})["data_dir"] = str(args.data_dir)
    if getattr(args, "no_simulator", False):
        overrides.setdefault("simulator", {})["enabled"] = False
    roles = ROLES if args.command == "run" else (args.command,)
    try:
        settings = Settings.load(args.config, os.environ, overrides)
        if getattr(args, "replay", None) is not None:
            settings = settings.replay(args.replay, speed=args.speed)
        if args.command not in ("run", "render") and settings.bus.kind == "memory":
            raise ConfigError(
                f"bus.kind is 'memory', which lives inside one process; 'pricestream "
                f'{args.command}\' needs a shared bus: set [bus] kind = "kafka" (or use '
                "'pricestream run' for everything in one process)"
            )
    except ConfigError as exc:
        print(f"pricestream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log.level, fmt=settings.log.format, access=settings.log.access)
    try:
        import uvloop
    except ImportError:  # not on this platform: the stdlib loop works too
        return asyncio.run(_run(settings, roles))
    return uvloop.run(_run(settings, roles))


def _tail(args: argparse.Namespace) -> int:
    from pricestream.client import LiveClient, LiveError

    channels = [f"ticks:{s.upper()}" for s in args.symbols]
    client = LiveClient(
        args.url,
        channels,
        api_key=os.environ.get("PRICESTREAM_API_KEY"),
        token=os.environ.get("PRICESTREAM_TOKEN"),
        max_hz=args.max_hz,
        max_attempts=args.attempts or None,
        on_event=lambda text: print(f"pricestream tail: {text}", file=sys.stderr, flush=True),
    )

    async def follow() -> int:
        shown = 0
        async for msg in client.messages():
            tick = msg.get("data")
            if msg.get("type") not in ("snapshot", "update") or not isinstance(tick, dict):
                continue
            print(format_tick(tick), flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                return 0
        return 0

    try:
        return asyncio.run(follow())
    except LiveError as exc:
        print(f"pricestream tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def format_tick(tick: dict[str, object]) -> str:
    """One line per tick: time (UTC), symbol, bid, ask, price, vendor."""
    ts_ms = tick.get("ts_ms")
    when = "--:--:--.---"
    if isinstance(ts_ms, int):
        when = time.strftime("%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}"

    def num(name: str) -> str:
        value = tick.get(name)
        return f"{value:>11.3f}" if isinstance(value, int | float) else f"{'?':>11}"

    symbol, vendor = str(tick.get("symbol", "?")), str(tick.get("vendor", ""))
    return (
        f"{when}  {symbol:<8}  bid {num('bid')}  ask {num('ask')}  price {num('price')}  {vendor}"
    )


def _progress_bar() -> Callable[[int, int], None] | None:
    """Draw a replay's progress on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    shown = [-1]

    def draw(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == shown[0]:
            return
        shown[0] = percent
        bar = "#" * (percent // 2)
        end = "\n" if done >= total else ""
        print(f"\rreplay [{bar:<50}] {percent:3d}%", end=end, file=sys.stderr, flush=True)

    return draw


async def _run(settings: Settings, roles: tuple[str, ...]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(running: Running) -> None:
        if "web" in running.roles:
            print(f"Pricestream is running: open {running.url}  (Ctrl-C stops it)", flush=True)
        else:
            print(f"Pricestream {', '.join(running.roles)} is running; health checks on "
                  f"{running.url}healthz  (Ctrl-C stops it)", flush=True)  # fmt: skip

    failures: list[str] = []
    try:
        await run_roles(
            settings, roles=roles, stop=stop, on_ready=ready, on_progress=_progress_bar()
        )
    except* OSError as group:  # the port is taken, the data dir is not writable, ...
        for exc in group.exceptions:
            hint = ""
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                hint = (f"; port {settings.server.port} is taken: choose another with --port "
                        "(0 picks a free one)")  # fmt: skip
            failures.append(f"cannot start: {exc}{hint}")
    except* PricestreamError as group:  # a role failed (the store, say): say which and why
        failures += [f"stopped: {exc}" for exc in group.exceptions]
    for failure in failures:
        print(f"pricestream: {failure}", file=sys.stderr)
    return 1 if failures else 0
