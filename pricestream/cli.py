"""``pricestream``: the command line. It assembles the roles; nothing imports it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pricestream import logs
from pricestream.embedded import Running, run_embedded
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricestream", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run every role in one process (embedded bus and store, simulated feeds, web page)",
        description="Run ingest, stream and web in one process on the embedded bus and store.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, dict[str, object]] = {}
    if args.host is not None:
        overrides.setdefault("server", {})["host"] = args.host
    if args.port is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if args.data_dir is not None:
        overrides.setdefault("storage", {})["data_dir"] = str(args.data_dir)
    if args.no_simulator:
        overrides.setdefault("simulator", {})["enabled"] = False
    try:
        settings = Settings.load(args.config, os.environ, overrides)
        if args.replay is not None:
            settings = settings.replay(args.replay, speed=args.speed)
    except ConfigError as exc:
        print(f"pricestream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log.level, fmt=settings.log.format)
    try:
        import uvloop
    except ImportError:  # not on this platform: the stdlib loop works too
        return asyncio.run(_run(settings))
    return uvloop.run(_run(settings))


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


async def _run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(running: Running) -> None:
        print(f"Pricestream is running: open {running.url}  (Ctrl-C stops it)", flush=True)

    failures: list[str] = []
    try:
        await run_embedded(settings, stop=stop, on_ready=ready, on_progress=_progress_bar())
    except* OSError as group:  # the port is taken, the data dir is not writable, ...
        failures += [f"cannot start: {exc}" for exc in group.exceptions]
    except* PricestreamError as group:  # a role failed (the store, say): say which and why
        failures += [f"stopped: {exc}" for exc in group.exceptions]
    for failure in failures:
        print(f"pricestream: {failure}", file=sys.stderr)
    return 1 if failures else 0
