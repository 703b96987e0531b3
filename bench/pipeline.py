"""Benchmark of the embedded pipeline, each result read against baselines measured in the same run.

Part 1, throughput (``bench/pipeline_throughput.py``, no websocket clients): simulated ticks
through a ``MemoryBus``, a real ``StreamWorker`` and a real ``SqliteStore``, beside decode loops,
a bare ``asyncio.Queue`` hand-off and each stage on its own, over the same bytes.

Part 2, latency (``bench/pipeline_latency.py``): the real embedded service fed at a paced rate,
websocket clients in a separate process, beside a bare ``websockets.broadcast`` of the same
messages to as many clients.

This file holds the options, the run and the report. Everything runs on uvloop, as the command
line runs the service. Progress goes to stderr; the results (a markdown table) go to stdout.
Run ``python bench/pipeline.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import gc
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import uvloop

from bench import pipeline_latency, pipeline_throughput
from bench.harness import apply_quick, command_line, header, machine, make_parser
from bench.pipeline_latency import LatencyOptions, LatencyResult, part_latency
from bench.pipeline_throughput import ThroughputOptions, ThroughputResult, part_throughput
from pricestream.settings import Settings


@dataclass(frozen=True, slots=True)
class Options:
    throughput: ThroughputOptions | None  # None: part 1 skipped
    latency: LatencyOptions | None  # None: part 2 skipped


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings().stream
    parser = make_parser(
        __file__,
        __doc__,
        examples=[
            ("", "full run, about 2-3 minutes"),
            ("--quick", "smoke run, a few seconds"),
            ("--no-latency --profile /tmp/pipe.prof", ""),
        ],
    )
    part1 = parser.add_argument_group("part 1: throughput")
    part1.add_argument("--ticks", type=int, default=1_000_000, help="ticks (default 1000000)")
    part1.add_argument(
        "--batch", type=int, default=1_000, help="ticks per producer send_many (default 1000)"
    )
    part1.add_argument(
        "--repeat", type=int, default=3, help="rounds of part 1; medians reported (default 3)"
    )
    part1.add_argument(
        "--sim-rate-hz",
        type=float,
        default=4.0,
        help="simulated ticks/s per vendor and metal, i.e. tick density in event time "
        "(default 4.0, the service default: 48 ticks/s over 4 metals and 3 vendors)",
    )
    part1.add_argument(
        "--max-batch", type=int, default=defaults.max_batch,
        help=f"worker poll size (default {defaults.max_batch}, the service default)",
    )  # fmt: skip
    part1.add_argument(
        "--flush-interval-ms", type=int, default=defaults.flush_interval_ms,
        help=f"worker store flush interval (default {defaults.flush_interval_ms})",
    )  # fmt: skip
    part1.add_argument(
        "--bus-capacity", type=int, default=defaults.bus_capacity,
        help=f"MemoryBus queue bound, also the asyncio.Queue bound (default "
        f"{defaults.bus_capacity})",
    )  # fmt: skip
    part1.add_argument("--profile", type=Path, help="cProfile the first pipeline run to FILE")
    part2 = parser.add_argument_group("part 2: latency")
    part2.add_argument("--clients", type=int, default=100, help="websocket clients (default 100)")
    part2.add_argument("--rate", type=float, default=1_000.0, help="ticks/s (default 1000)")
    part2.add_argument(
        "--seconds", type=float, default=15.0, help="measured seconds per server (default 15)"
    )
    part2.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)"
    )
    part2.add_argument(
        "--subscribe",
        choices=("one", "all"),
        default="one",
        help="'one': each client subscribes to one metal's ticks:SYMBOL channel, clients spread "
        "evenly over the four; 'all': every client subscribes to all four (default one)",
    )
    part2.add_argument(
        "--no-compression",
        action="store_true",
        help="clients do not offer permessage-deflate (by default they do, as browsers do)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--no-throughput", action="store_true", help="skip part 1")
    parser.add_argument("--no-latency", action="store_true", help="skip part 2")
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    quick = {"--ticks": 20_000, "--repeat": 1, "--clients": 8, "--seconds": 1.5, "--warmup": 0.5}
    apply_quick(args, argv, quick)
    for name in ("ticks", "batch", "repeat", "max_batch", "clients", "bus_capacity"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0 or args.sim_rate_hz <= 0:
        parser.error("--rate, --seconds and --sim-rate-hz must be > 0, --warmup >= 0")
    throughput = ThroughputOptions(
        ticks=args.ticks,
        batch=args.batch,
        repeat=args.repeat,
        sim_rate_hz=args.sim_rate_hz,
        max_batch=args.max_batch,
        flush_interval_ms=args.flush_interval_ms,
        bus_capacity=args.bus_capacity,
        profile=args.profile,
    )
    latency = LatencyOptions(
        clients=args.clients,
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        subscribe=args.subscribe,
        compression=not args.no_compression,
    )
    return Options(
        throughput=None if args.no_throughput else throughput,
        latency=None if args.no_latency else latency,
    )


def report(
    opts: Options,
    info: list[tuple[str, str]],
    command: str,
    tp: ThroughputResult | None,
    lat: list[LatencyResult],
) -> str:
    lines = header("Pricestream embedded pipeline benchmark", command=command, facts=info)
    if tp is not None:
        lines += pipeline_throughput.report_lines(tp)
    if opts.latency is not None and lat:
        lines += pipeline_latency.report_lines(opts.latency, lat)
    if tp is not None:
        lines += pipeline_throughput.profile_lines(tp)
    return "\n".join(lines)


async def main_async(opts: Options, command: str) -> str:
    info = machine()
    tp: ThroughputResult | None = None
    lat: list[LatencyResult] = []
    with tempfile.TemporaryDirectory(prefix="pricestream-bench-") as d:
        tmp = Path(d)
        if opts.throughput is not None:
            tp = await part_throughput(opts.throughput, Settings(), tmp)
        gc.collect()
        if opts.latency is not None:
            lat = await part_latency(opts.latency, tmp)
    return report(opts, info, command, tp, lat)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    print(uvloop.run(main_async(opts, command_line(__file__))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
