"""The gate: plausibility, timestamps, duplicates, gaps and spikes, as plain tables."""

from __future__ import annotations

import pytest

from ingest.validate import Gate, Limits, Verdict
from stream.contract import Tick

NOW = 1_795_000_000_000


def t(
    price: float = 100.0, *, ts: int = NOW, seq: int | None = None, spread: float = 0.2,
    vendor: str = "v", symbol: str = "XAU-USD",
) -> Tick:  # fmt: skip
    return Tick(symbol, vendor, price - spread / 2, price + spread / 2, price, ts, NOW, None, seq)


def verdicts(gate: Gate, ticks: list[Tick]) -> list[tuple[str, str]]:
    out = []
    for tick in ticks:
        verdict, why = gate.check(tick)
        out.append((verdict.value, (why or "").split(":")[0]))
    return out


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        (t(ts=NOW + 6_000), "future"),
        (t(ts=NOW - 61_000), "past"),
        (t(spread=-0.5), "crossed quote"),
        (t(price=-1.0), "non-positive bid"),
    ],
)
def test_implausible_ticks_are_rejected_with_their_reason(tick: Tick, reason: str) -> None:
    assert verdicts(Gate(), [tick]) == [("reject", reason)]


def test_time_bounds_can_be_switched_off_for_replayed_history() -> None:
    gate = Gate(Limits(max_age_ms=None))
    assert verdicts(gate, [t(ts=NOW - 10 * 86_400_000)]) == [("accept", "")]


def test_a_repeated_or_older_sequence_number_is_a_duplicate() -> None:
    gate = Gate()
    got = verdicts(gate, [t(seq=5), t(101.0, seq=5), t(101.0, seq=4), t(101.0, seq=6)])
    assert got == [("accept", ""), ("duplicate", "seq 5 after 5"), ("duplicate", "seq 4 after 5"),
                   ("accept", "")]  # fmt: skip


def test_without_sequence_numbers_an_identical_quote_is_a_duplicate() -> None:
    gate = Gate()
    got = verdicts(gate, [t(), t(), t(ts=NOW + 1), t(ts=NOW + 1, symbol="XAG-USD")])
    assert [v for v, _ in got] == ["accept", "duplicate", "accept", "accept"]


def test_gaps_are_counted_only_for_gapless_vendors() -> None:
    gapless, other = Gate(Limits(gapless=True)), Gate()
    for gate, expected in ((gapless, [0, 0, 3, 0]), (other, [0, 0, 0, 0])):
        gaps = []
        for seq in (1, 2, 6, 7):
            gate.check(t(seq=seq))
            gaps.append(gate.gap)
        assert gaps == expected


def test_each_vendor_has_its_own_sequence() -> None:
    gate = Gate()
    got = verdicts(gate, [t(seq=5, vendor="a"), t(seq=5, vendor="b")])
    assert [v for v, _ in got] == ["accept", "accept"]


def test_a_spike_is_rejected_until_enough_ticks_confirm_the_new_level() -> None:
    gate = Gate(Limits(spike_bp=100, spike_confirm=3))
    got = verdicts(gate, [t(100.0, ts=NOW - 5), t(110.0, ts=NOW - 4), t(100.5, ts=NOW - 3),
                          t(110.0, ts=NOW - 2), t(110.1, ts=NOW - 1), t(110.2)])  # fmt: skip
    assert got == [("accept", ""), ("reject", "spike"), ("accept", ""), ("reject", "spike"),
                   ("reject", "spike"), ("accept", "")]  # fmt: skip


def test_no_spike_limit_when_switched_off() -> None:
    gate = Gate(Limits(spike_bp=None))
    assert verdicts(gate, [t(100.0, ts=NOW - 1), t(500.0)]) == [("accept", "")] * 2


def test_one_sequence_for_all_symbols_of_a_vendor() -> None:
    gate = Gate(Limits(gapless=True, seq_per_symbol=False))
    gaps = []
    for seq, symbol in ((1, "XAU-USD"), (2, "XAG-USD"), (3, "XAU-USD"), (5, "XAG-USD")):
        verdict, _ = gate.check(t(seq=seq, symbol=symbol))
        assert verdict is Verdict.ACCEPT
        gaps.append(gate.gap)
    assert gaps == [0, 0, 0, 1]
    assert gate.check(t(seq=4, symbol="XPT-USD"))[0] is Verdict.DUPLICATE
    assert gate.check(t(seq=6, symbol="XPT-USD"))[0] is Verdict.ACCEPT  # first price after it


def test_an_absurd_sequence_jump_is_rejected_and_does_not_freeze_the_symbol() -> None:
    gate = Gate(Limits(max_seq_jump=1_000))
    got = verdicts(gate, [t(seq=5), t(100.1, seq=9_000_000_000_000_000_000), t(100.2, seq=6)])
    assert got == [
        ("accept", ""),
        ("reject", "seq jump"),
        ("accept", ""),
    ]


def test_numbering_again_from_the_start_is_a_reset_not_a_run_of_duplicates() -> None:
    gate = Gate(Limits(seq_reset_below=100, gapless=True))
    assert gate.check(t(seq=50_000))[0] is Verdict.ACCEPT
    assert gate.check(t(100.1, seq=49_950))[0] is Verdict.DUPLICATE  # re-sent, recent
    verdict, _ = gate.check(t(100.2, seq=1))
    assert (verdict, gate.reset, gate.gap) == (Verdict.ACCEPT, True, 0)
    assert gate.check(t(100.3, seq=2))[0] is Verdict.ACCEPT
    assert not gate.reset
