"""Checks on normalised ticks: pure, each failure a reason to dead-letter.

``problem`` looks at one tick alone; ``Gate`` keeps one vendor's last quotes to catch duplicates,
sequence gaps, spikes and timestamps too far from the receipt time.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from stream.contract import Tick


def problem(tick: Tick) -> str | None:
    """Why ``tick`` must not be published, or None when it is plausible."""
    for name, value in (("bid", tick.bid), ("ask", tick.ask), ("price", tick.price)):
        if not math.isfinite(value):
            return f"non-finite {name}: {value!r}"
        if value <= 0:
            return f"non-positive {name}: {value!r}"
    if tick.ts_ms < 0:
        return f"bad time: {tick.ts_ms} is before 1970"
    if tick.bid > tick.ask:
        return f"crossed quote: bid {tick.bid} > ask {tick.ask}"
    if tick.size is not None and (not math.isfinite(tick.size) or tick.size < 0):
        return f"bad size: {tick.size!r}"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one vendor's ticks must stay within.

    ``spike_bp`` is the largest move from the vendor's last accepted price of the symbol, in
    basis points (None: no limit); a new level is accepted once ``spike_confirm`` ticks in a row
    agree on it, or when the last accepted price is older than ``spike_reset_ms``.
    ``max_future_ms`` and ``max_age_ms`` bound the vendor's timestamp against our receipt time
    (None: no bound; replayed history has no age bound). ``gapless`` says sequence numbers
    rise by one, so a jump is reported as a gap; ``seq_per_symbol`` says whether the vendor
    numbers each symbol on its own (most do) or all its messages in one sequence (the simulator).
    """

    spike_bp: float | None = 500.0
    spike_confirm: int = 3
    spike_reset_ms: int = 60_000
    max_future_ms: int | None = 5_000
    max_age_ms: int | None = 60_000
    gapless: bool = False
    seq_per_symbol: bool = True
    #: a sequence number this far past the last one is implausible: rejected, the last kept
    max_seq_jump: int = 1_000_000
    #: a sequence number this far below the last one is the vendor numbering again from the
    #: start (a reconnect, a restart), not a re-sent message: accepted, counted as a reset
    seq_reset_below: int = 10_000


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    REJECT = "reject"


@dataclass(slots=True)
class _Last:
    price: float = 0.0
    recv_ms: int = 0
    key: tuple[int, float, float, float, float | None] | None = None
    spikes: int = 0
    spike_price: float = 0.0


class Gate:
    """One vendor's stateful checks: plausibility, time, duplicates, gaps and spikes. Pure.

    ``check(tick)`` returns the verdict with the reason of a reject or a duplicate, sets ``gap``
    to the count of sequence numbers skipped just before an accepted tick (0 without), and
    ``reset`` when that tick restarted the vendor's numbering.
    A duplicate is a repeated (or older) sequence number or, for vendors without sequence
    numbers, a quote identical to the last accepted one of its symbol (same time and prices).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.gap = 0
        self.reset = False
        self._last: dict[tuple[str, str], _Last] = {}  # (vendor, symbol) -> last accepted
        self._seq: dict[tuple[str, str], int] = {}  # (vendor, symbol or "") -> last sequence

    def check(self, tick: Tick) -> tuple[Verdict, str | None]:
        self.gap = 0
        self.reset = False
        why = problem(tick)
        if why is not None:
            return Verdict.REJECT, why
        lim = self.limits
        now = tick.recv_ms
        if lim.max_future_ms is not None and tick.ts_ms > now + lim.max_future_ms:
            return Verdict.REJECT, f"future: {tick.ts_ms} is {tick.ts_ms - now} ms after receipt"
        if lim.max_age_ms is not None and tick.ts_ms < now - lim.max_age_ms:
            return Verdict.REJECT, f"past: {tick.ts_ms} is {now - tick.ts_ms} ms before receipt"
        where = (tick.vendor, tick.symbol)
        last = self._last.get(where)
        if last is None:
            last = self._last[where] = _Last()
        fresh = last.key is None  # nothing accepted yet for this vendor and symbol
        key = (tick.ts_ms, tick.bid, tick.ask, tick.price, tick.size)
        seq_key = where if lim.seq_per_symbol else (tick.vendor, "")
        last_seq = self._seq.get(seq_key) if tick.seq is not None else None
        if last_seq is not None and tick.seq is not None:
            if tick.seq - last_seq > lim.max_seq_jump:
                return Verdict.REJECT, (
                    f"seq jump: {tick.seq} after {last_seq} (more than {lim.max_seq_jump} ahead)"
                )
            if last_seq - tick.seq > lim.seq_reset_below:
                self.reset = True
                last_seq = None  # numbering again from the start: no gap, no duplicate
            elif tick.seq <= last_seq:
                return Verdict.DUPLICATE, f"seq {tick.seq} after {last_seq}"
        elif key == last.key:  # never true while nothing was accepted (key is None)
            return Verdict.DUPLICATE, "same quote again"
        if (
            not fresh
            and lim.spike_bp is not None
            and now - last.recv_ms <= lim.spike_reset_ms
            and abs(tick.price - last.price) * 10_000 > lim.spike_bp * last.price
        ):
            near = abs(tick.price - last.spike_price) * 10_000 <= lim.spike_bp * tick.price
            last.spikes = last.spikes + 1 if (last.spikes and near) else 1
            last.spike_price = tick.price
            if last.spikes < lim.spike_confirm:
                move = (tick.price - last.price) / last.price * 10_000
                return Verdict.REJECT, f"spike: {move:+.0f} bp from {last.price}"
        if lim.gapless and tick.seq is not None and last_seq is not None:
            self.gap = max(0, tick.seq - last_seq - 1)
        last.price, last.recv_ms, last.key, last.spikes = tick.price, now, key, 0
        if tick.seq is not None:
            self._seq[seq_key] = tick.seq
        return Verdict.ACCEPT, None
