"""What a stream worker counts: ticks, rejects, updates, store writes and their latency.

Kept apart from the worker so that readers of the counters (web's /metrics) import the counters,
not the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Upper bounds of the store write latency buckets, in ms (``WorkerStats.store_write_buckets``).
STORE_WRITE_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)


@dataclass(slots=True)
class WorkerStats:
    ticks_in: int = 0
    ticks_accepted: int = 0
    replayed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    updates_out: int = 0
    store_writes: int = 0
    store_write_ms_total: float = 0.0
    #: writes by latency: ``[i]`` counts those at most ``STORE_WRITE_BUCKETS_MS[i]``, the last
    #: one those slower than every bound
    store_write_buckets: list[int] = field(
        default_factory=lambda: [0] * (len(STORE_WRITE_BUCKETS_MS) + 1)
    )
    store_retries: int = 0
    batches: int = 0
    revocations: int = 0
    #: records whose bus positions are committed: ``ticks_in - ticks_committed`` is the lag
    ticks_committed: int = 0

    def observe_store_write(self, ms: float) -> None:
        self.store_writes += 1
        self.store_write_ms_total += ms
        buckets = self.store_write_buckets
        for i, bound in enumerate(STORE_WRITE_BUCKETS_MS):
            if ms <= bound:
                buckets[i] += 1
                return
        buckets[-1] += 1
