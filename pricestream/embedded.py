"""Every role in one process on the embedded default: in-process bus, SQLite, collectors, web.

The same assembly as the distributed roles (``pricestream.roles``), with every role at once;
the settings choose the bus and store, so ``pricestream run`` on Kafka and MongoDB works too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingest.replay import Progress
from pricestream.roles import ROLES, Running, run_roles
from pricestream.settings import Settings

__all__ = ["Running", "run_embedded"]


async def run_embedded(
    settings: Settings,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[Running], None] | None = None,
    on_progress: Progress | None = None,
) -> None:
    """Run every role until ``stop`` is set, then shut down cleanly."""
    await run_roles(settings, roles=ROLES, stop=stop, on_ready=on_ready, on_progress=on_progress)
