"""The renderer: data versions, the two caches, single flight, the pools and pre-generation.

This is the I/O shell around the pure drawing code. A request is served like this:

1. The symbol's **data version** is its event-time watermark (the time of its newest tick,
   ``SymbolState.watermark_ms`` in the store): every new tick, so every new or changed candle,
   makes a new version. The version is read from the store at most once per the range's
   freshness (``spec.FRESH_MS``: 1 s for a 1h chart, 15 min for a 5y one), so a cached chart is
   never staler than that, and a cache hit costs no store query.
2. The cache key is the normalised request plus that version; the ETag is its hash. A matching
   ``If-None-Match`` is answered 304 without rendering.
3. The memory cache (LRU bounded in bytes) answers; otherwise identical concurrent requests
   share one render (single flight). The candles of ``(symbol, res, range, version)`` are read
   once and shared by every chart of them (sizes, themes, formats), and sent to each worker
   once.
4. The job goes to the chart pool (PNG, SVG, plotly JSON) or the text pool (snapshots): two
   pools, so a flood of one cannot starve the other. For ranges that stay fresh at least
   ``disk_min_fresh_ms`` (1w and longer by default) and for ``disk_formats`` (PNG and
   snapshots by default) the worker looks in the shared cache directory first and writes what
   it renders there. Measured: a file costs the worker 0.05-0.3 ms, as much as an SVG or a
   plotly figure, so those and short-lived 1h/1d charts stay in memory only.

Errors: ``NoData`` (a ``LookupError``: the symbol has no prices) and the pool's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.cache import ByteLRU, SingleFlight, SizedLRU
from render.pool import Pool, PoolError
from render.reduce import Floats
from render.spec import (
    CONTENT_TYPES,
    FRESH_MS,
    MAX_CANDLES,
    RANGES_MS,
    ChartSpec,
    Spec,
    parse_path,
)
from render.worker import RenderJob
from stream.contract import RESOLUTIONS, Precision, Store, SymbolState

log = logging.getLogger(__name__)


#: What ``RenderConfig.disk_formats`` may name: chart formats, and every snapshot format.
DISK_FORMATS = ("png", "svg", "json", "snapshots")


class NoData(LookupError):
    """The symbol has no prices yet."""


@dataclass(frozen=True, slots=True)
class RenderConfig:
    chart_workers: int = 2
    text_workers: int = 1
    chart_queue: int = 512
    text_queue: int = 256
    max_batch: int = 16
    timeout_ms: int = 10_000
    retry_after_s: int = 1
    memory_bytes: int = 256 * 1024 * 1024
    #: Candle arrays kept for rendering (the web process), and per render worker: every chart
    #: of a data version reads them from here instead of the store. A 5y chart's are 73 KB.
    data_bytes: int = 128 * 1024 * 1024
    cache_dir: Path | None = None
    disk_max_age_s: int = 86_400
    #: Ranges whose charts stay fresh at least this long are shared through the directory;
    #: a 1h chart (fresh for 1 s) would be a new file every second that no other node reads.
    disk_min_fresh_ms: int = 30_000
    #: What is shared through the directory: chart formats and "snapshots". An SVG or a plotly
    #: figure costs about as much to render (0.1 ms) as a file costs to look for and write.
    disk_formats: tuple[str, ...] = ("png", "snapshots")
    pregenerate: tuple[str, ...] = ()
    pregenerate_interval_ms: int = 1_000
    #: the decimals each symbol's prices are printed with
    precision: Precision = field(default_factory=Precision)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str
    content_type: str
    max_age_s: int


@dataclass(frozen=True, slots=True)
class Version:
    """What a request is answered from: the symbol's state, the cache key and the ETag."""

    state: SymbolState
    key: str
    etag: str


@dataclass
class RendererStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0
    pregenerated: int = 0


def candle_rows(candles: list[object]) -> Floats:
    """Candles as the float64 ``(n, 5)`` array the drawing code takes."""
    return np.array(
        [(c.start_ms, c.open, c.high, c.low, c.close) for c in candles],  # type: ignore[attr-defined]
        dtype=np.float64,
    ).reshape(-1, 5)


class Renderer:
    def __init__(self, store: Store, *, config: RenderConfig) -> None:
        self.store = store
        self.config = config
        self.stats = RendererStats()
        self.cache = ByteLRU(config.memory_bytes)
        self.charts = self._pool("charts", config.chart_workers, config.chart_queue)
        self.text = self._pool("text", config.text_workers, config.text_queue)
        self._versions: dict[str, tuple[float, SymbolState]] = {}
        self._version_flight: SingleFlight[str, SymbolState | None] = SingleFlight()
        self._data: SizedLRU[tuple[str, str, str, int], Floats] = SizedLRU(
            config.data_bytes, _nbytes
        )
        self._data_flight: SingleFlight[tuple[str, str, str, int], Floats] = SingleFlight()
        self._flight: SingleFlight[str, bytes] = SingleFlight()
        self.pregenerate = [parse_path(p) for p in config.pregenerate]
        self._tasks: list[asyncio.Task[None]] = []

    def _pool(self, name: str, workers: int, max_queue: int) -> Pool:
        c = self.config
        return Pool(
            name,
            workers=workers,
            max_queue=max_queue,
            max_batch=c.max_batch,
            timeout_ms=c.timeout_ms,
            retry_after_s=c.retry_after_s,
            cache_dir=c.cache_dir,
            worker_data_bytes=c.data_bytes,
        )

    async def start(self) -> None:
        if self.config.cache_dir is not None:
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(self.charts.start(), self.text.start())
        if self.pregenerate:
            self._tasks.append(asyncio.create_task(self._keep_warm(), name="pregenerate"))
        if self.config.cache_dir is not None:
            self._tasks.append(asyncio.create_task(self._sweep_disk(), name="cache-sweep"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(self.charts.close(), self.text.close())

    # -- the request path --------------------------------------------------------------------

    async def prepare(self, spec: Spec) -> tuple[Version, Rendered | None]:
        """The data version ``spec`` is answered at (with its ETag), and the cached answer if
        any."""
        state = await self._state(spec.symbol, FRESH_MS[spec.range])
        key = f"{spec.key}@{state.watermark_ms}"
        version = Version(state, key, _etag(key))
        body = self.cache.get(key)
        if body is None:
            return version, None
        self.stats.hits += 1
        return version, self._answer(spec, body, version.etag)

    async def render(self, spec: Spec, version: Version | None = None) -> Rendered:
        """The answer for ``spec`` at ``version`` (from ``prepare``; the current one if not
        given), from the cache or rendered (once for concurrent twins)."""
        if version is None:
            version, cached = await self.prepare(spec)
            if cached is not None:
                return cached
        state, key, etag = version.state, version.key, version.etag
        body = self.cache.get(key)
        if body is not None:
            self.stats.hits += 1
            return self._answer(spec, body, etag)
        if key in self._flight:
            self.stats.shared += 1
        else:
            self.stats.misses += 1

        async def render() -> bytes:
            body = await self._render(spec, state, etag)
            self.cache.put(key, body)
            return body

        return self._answer(spec, await self._flight.run(key, render), etag)

    def _answer(self, spec: Spec, body: bytes, etag: str) -> Rendered:
        return Rendered(body, etag, CONTENT_TYPES[spec.fmt], FRESH_MS[spec.range] // 1000)

    async def _render(self, spec: Spec, state: SymbolState, etag: str) -> bytes:
        rows = await self._rows(spec, state.watermark_ms)
        data_key = (spec.symbol, spec.res, spec.range, state.watermark_ms)
        c = self.config
        kind = spec.fmt if isinstance(spec, ChartSpec) else "snapshots"
        shared = (
            c.cache_dir and kind in c.disk_formats and FRESH_MS[spec.range] >= c.disk_min_fresh_ms
        )
        name = f"{etag.strip(chr(34))}.{spec.fmt}" if shared else None
        spec = dataclasses.replace(spec, decimals=c.precision.of(spec.symbol))
        if isinstance(spec, ChartSpec):
            chart_job = RenderJob(spec, state.watermark_ms, cache_name=name)
            return await self.charts.render(chart_job, data_key=data_key, data=rows)
        text_job = RenderJob(spec, state.watermark_ms, latest=state.latest, cache_name=name)
        return await self.text.render(text_job, data_key=data_key, data=rows)

    async def _state(self, symbol: str, fresh_ms: int) -> SymbolState:
        now = time.monotonic()
        known = self._versions.get(symbol)
        if known is not None and (now - known[0]) * 1000 < fresh_ms:
            return known[1]
        state = await self._version_flight.run(symbol, lambda: self.store.state(symbol))
        if state is None:
            raise NoData(f"no prices for {symbol}")
        if known is None or known[1].watermark_ms <= state.watermark_ms:
            self._versions[symbol] = (now, state)
        return state

    async def _rows(self, spec: Spec, as_of_ms: int) -> Floats:
        key = (spec.symbol, spec.res, spec.range, as_of_ms)
        rows = self._data.get(key)
        if rows is not None:
            return rows

        async def fetch() -> Floats:
            start_ms = as_of_ms - RANGES_MS[spec.range]
            limit = min(MAX_CANDLES, RANGES_MS[spec.range] // RESOLUTIONS[spec.res] + 2)
            candles = await self.store.candles(
                spec.symbol, spec.res, start_ms=start_ms, end_ms=as_of_ms + 1, limit=limit
            )
            return candle_rows(list(candles))

        rows = await self._data_flight.run(key, fetch)
        self._data.put(key, rows)
        return rows

    # -- background work ---------------------------------------------------------------------

    async def _keep_warm(self) -> None:
        """Re-render the configured charts whenever their data version moves."""
        done: dict[str, str] = {}
        while True:
            for spec in self.pregenerate:
                try:
                    rendered = await self.render(spec)
                except (NoData, PoolError) as exc:
                    log.debug("pre-generation of %s skipped: %s", spec.key, exc)
                    continue
                if done.get(spec.key) != rendered.etag:
                    done[spec.key] = rendered.etag
                    self.stats.pregenerated += 1
            await asyncio.sleep(self.config.pregenerate_interval_ms / 1000)

    async def _sweep_disk(self) -> None:
        """Delete files of the shared cache directory older than ``disk_max_age_s``."""
        directory = self.config.cache_dir
        assert directory is not None
        while True:
            removed = await asyncio.to_thread(_sweep, directory, self.config.disk_max_age_s)
            if removed:
                log.info("cache directory %s: removed %d old files", directory, removed)
            await asyncio.sleep(60)


def _sweep(directory: Path, max_age_s: int) -> int:
    cutoff = time.time() - max_age_s
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # another node removed it first
                continue
    return removed


def _nbytes(_key: object, rows: Floats) -> int:
    return int(rows.nbytes)


def _etag(key: str) -> str:
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'
