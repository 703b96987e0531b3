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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        failures += [f"cannot start: {exc}" for exc in group.exceptions]
    except* PricestreamError as group:  # a role failed (the store, say): say which and why
        failures += [f"stopped: {exc}" for exc in group.exceptions]
    for failure in failures:
        print(f"pricestream: {failure}", file=sys.stderr)
    return 1 if failures else 0
