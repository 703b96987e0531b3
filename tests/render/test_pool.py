"""The render pool with real worker processes: data sets kept within a byte budget, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from render.pool import Pool, RenderFailed
from render.reduce import Floats
from render.spec import ChartSpec
from render.worker import RenderJob

AS_OF_MS = 1_795_000_000_000
SPEC = ChartSpec("XAU-USD", "1h", "1m", "svg", 400, 200, "area", "light")


def rows(level: float, n: int = 50) -> Floats:
    t = AS_OF_MS - 60_000 * np.arange(n, 0, -1, dtype=np.float64)
    close = level + np.sin(np.arange(n) / 5)
    return np.column_stack([t, close, close + 1, close - 1, close])


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool("test", workers=1, max_queue=64, worker_data_bytes=3 * rows(0).nbytes)
    await p.start()
    yield p
    await p.close()


def job() -> RenderJob:
    return RenderJob(SPEC, AS_OF_MS)


async def render(pool: Pool, key: int) -> bytes:
    return await pool.render(job(), data_key=key, data=rows(1_000 * (key + 1)))


async def test_data_sets_stay_within_the_budget_and_a_forgotten_one_is_sent_again(
    pool: Pool,
) -> None:
    first = [await render(pool, key) for key in range(6)]  # one at a time
    assert len(set(first)) == 6  # each chart drew its own data
    (worker,) = pool._workers
    assert list(worker.data_keys) == [3, 4, 5]
    assert worker.data_bytes <= pool.worker_data_bytes
    assert await render(pool, 0) == first[0]  # forgotten, so sent again
    assert pool.stats.failed == 0


async def test_a_batch_never_loses_a_data_set_it_needs(pool: Pool) -> None:
    for key in range(3):
        await render(pool, key)
    # The first request goes alone; the other four wait and go in one batch, which uses set 2
    # (held) and adds three: over the budget, and set 2 is the oldest when the last is added.
    bodies = await asyncio.gather(*(render(pool, key) for key in (10, 2, 11, 12, 13)))
    assert pool.stats.batches == 5
    assert len(set(bodies)) == 5
    assert pool.stats.failed == 0


async def test_a_job_that_raises_fails_alone_and_the_worker_serves_on(pool: Pool) -> None:
    pid = pool.pids()
    bad = RenderJob("not a chart spec", AS_OF_MS)  # type: ignore[arg-type]
    with pytest.raises(RenderFailed, match="Error"):
        await pool.render(bad, data_key="bad", data=rows(1))
    assert await render(pool, 1)
    assert pool.pids() == pid
    assert (pool.stats.failed, pool.stats.restarts) == (1, 0)
