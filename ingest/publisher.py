"""The publisher: accepted ticks, the composite ticks they make and dead letters to the bus.

With a ``Composite``, vendor ticks go to ``vendor-ticks`` and the composite ticks to ``ticks``
(which the candles are made of); without one, vendor ticks go to ``ticks``. Every record is keyed
by symbol and goes through one ``stream.sender`` buffer: in order, held while the bus is away,
never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from ingest.composite import Composite
from stream.contract import (
    DEADLETTER,
    TICKS,
    VENDOR_TICKS,
    DeadLetter,
    Producer,
    Tick,
    encode_deadletter,
    encode_tick,
)
from stream.sender import Item, Sender


class Publisher:
    """Accepted ticks to the bus (key = symbol) and letters to the dead-letter, through a
    ``Sender``: in order, buffered while the bus is away, never dropped.

    ``send`` composes and queues a batch and returns at once (it waits only while the buffer is
    full); ``run`` delivers what is queued and must be running; ``drain`` waits until all of it
    is on the bus.
    """

    def __init__(
        self,
        producer: Producer,
        *,
        composite: Composite | None = None,
        max_queued: int = 500_000,
    ) -> None:
        self.producer = producer
        self.composite = composite
        self.sender = Sender(producer, max_queued=max_queued)
        self._vendor_topic = VENDOR_TICKS if composite is not None else TICKS

    async def run(self) -> None:
        await self.sender.run()

    async def drain(self) -> None:
        await self.sender.drain()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Publisher]:
        """``run`` in a task for the block; on leaving, ``drain`` and stop it."""
        task = asyncio.create_task(self.run(), name="publisher")
        try:
            yield self
            await self.drain()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def send(self, ticks: Sequence[Tick], letters: Sequence[DeadLetter] = ()) -> None:
        """Queue accepted vendor ticks, the composite ticks they make, and dead letters.

        The composite judges staleness on each tick's own receipt time, so however long a
        batch waits to be sent, it makes the same composite ticks.
        """
        topic = self._vendor_topic
        items: list[Item] = [(topic, t.symbol.encode(), encode_tick(t)) for t in ticks]
        if self.composite is not None:
            update = self.composite.update
            for t in ticks:
                made = update(t, t.recv_ms)
                if made is not None:
                    items.append((TICKS, made.symbol.encode(), encode_tick(made)))
        items += [(DEADLETTER, None, encode_deadletter(d)) for d in letters]
        await self.sender.put(items)
