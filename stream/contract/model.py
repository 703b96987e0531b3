"""Contract values: ``Tick``, ``Candle``, ``DeadLetter`` and ``VendorStatus``.

All are frozen msgspec structs: msgspec decodes wire bytes straight into them, checking every
field's type in the same pass. Times are integer milliseconds since the epoch, UTC.
"""

from __future__ import annotations

import functools
import re

import msgspec

from stream.contract.errors import InvalidSymbol
from stream.contract.precision import round_price

_SYMBOL = re.compile(r"^[A-Z0-9]{2,12}(-[A-Z0-9]{2,12})+$")


@functools.lru_cache(maxsize=4_096)  # a feed repeats a few symbols millions of times
def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it looks like ``XAU-USD``; raise ``InvalidSymbol`` otherwise."""
    if not _SYMBOL.fullmatch(symbol):
        raise InvalidSymbol(f"symbol {symbol[:40]!r} is not of the form XAU-USD")
    return symbol


class Tick(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1, omit_defaults=True):
    """One price observation from one vendor.

    ``price`` is the last trade, or the mid when the vendor has no trades. ``ts_ms`` is the
    vendor's time, ``recv_ms`` the time our collector received it. ``seq`` is the vendor's own
    sequence number when it has one.
    """

    symbol: str
    vendor: str
    bid: float
    ask: float
    price: float
    ts_ms: int
    recv_ms: int
    size: float | None = None
    seq: int | None = None

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


class Candle(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1):
    """One OHLC bucket of one symbol at one resolution.

    ``ticks`` counts the ticks folded in; ``first_ts_ms``/``last_ts_ms`` are the times of the ticks
    that set ``open`` and ``close``. ``closed`` means no tick can change it any more: the
    symbol's event-time watermark has passed ``end_ms`` by more than the grace period.
    """

    symbol: str
    res: str
    start_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    ticks: int
    first_ts_ms: int
    last_ts_ms: int
    closed: bool

    def public(self, decimals: int | None = None) -> dict[str, object]:
        """The fields the HTTP and websocket APIs show, prices to ``decimals`` places."""
        r = (lambda v: v) if decimals is None else (lambda v: round_price(v, decimals))
        return {
            "start_ms": self.start_ms,
            "open": r(self.open),
            "high": r(self.high),
            "low": r(self.low),
            "close": r(self.close),
            "ticks": self.ticks,
            "closed": self.closed,
        }


class DeadLetter(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1):
    """A rejected message: why, where from (vendor or topic), when, and its raw bytes."""

    reason: str
    source: str
    ts_ms: int
    raw: bytes


class VendorStatus(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=1):
    """One vendor feed's state as ingest last saw it, taken at ``ts_ms``.

    ``rejects`` counts rejected messages by reason; ``duplicates`` dropped re-sent quotes;
    ``gaps`` the sequence gaps seen (``missed`` the numbers they skipped); ``seq_resets`` the
    times the vendor numbered again from the start. ``stale`` is true once the feed has given no
    sign of life (an accepted tick, the same quote again, a heartbeat) for its
    ``stale_after_ms``; ``last_message_ms`` is that last sign of life.
    """

    name: str
    kind: str
    profile: str
    ts_ms: int
    connected: bool
    stale: bool
    last_message_ms: int | None
    messages: int
    published: int
    duplicates: int
    gaps: int
    missed: int
    heartbeats: int
    errors: int
    reconnects: int
    rejects: dict[str, int]
    last_error: str | None = None
    seq_resets: int = 0


def tick_public(tick: Tick, decimals: int | None = None) -> dict[str, object]:
    """The fields the HTTP and websocket APIs show for a tick, prices to ``decimals`` places."""
    r = (lambda v: v) if decimals is None else (lambda v: round_price(v, decimals))
    out: dict[str, object] = {
        "symbol": tick.symbol,
        "vendor": tick.vendor,
        "bid": r(tick.bid),
        "ask": r(tick.ask),
        "price": r(tick.price),
        "ts_ms": tick.ts_ms,
        "recv_ms": tick.recv_ms,
    }
    if tick.size is not None:
        out["size"] = tick.size
    return out


def tick_key(tick: Tick) -> str:
    """A tick's identity in an archive: the same tick delivered twice has the same key."""
    return f"{tick.symbol}|{tick.vendor}|{tick.ts_ms}|{tick.seq}|{tick.bid}|{tick.ask}|{tick.price}"
