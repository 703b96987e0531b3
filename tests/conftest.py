"""Shared fixtures: a whole embedded service on a free loopback port, and the real servers.

``mongo_server`` and ``kafka_broker`` start once per test session (on free loopback ports) and
are shared: tests keep apart by database and topic names. A test that stops or kills a server
starts its own instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pricestream.embedded import Running, run_embedded
from pricestream.settings import Settings
from tests.services.kafka import FAST_GROUPS, KafkaBroker
from tests.services.mongo import MongoServer


@dataclass
class Service:
    url: str
    port: int
    data_dir: Path
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@contextlib.asynccontextmanager
async def embedded_service(
    data_dir: Path, *, config: Path | None = None, **sections: Mapping[str, object]
) -> AsyncIterator[Service]:
    """Start the embedded service on 127.0.0.1 and a free port; stop it cleanly on exit.

    ``config`` is a TOML file read first (for ``[[vendors]]`` tables); ``sections`` override it.
    """
    overrides: dict[str, Mapping[str, object]] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "storage": {"data_dir": str(data_dir)},
        "simulator": {"seed": 7, "rate_hz": 20.0, "history_days": 0},
        "stream": {"grace_ms": 300},
        **sections,
    }
    settings = Settings.load(config, {}, overrides)
    stop = asyncio.Event()
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_embedded(settings, stop=stop, on_ready=ready.set_result))
    waiting: list[asyncio.Future[Any]] = [task, ready]
    done, _ = await asyncio.wait(waiting, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        task.cancel()
        raise RuntimeError(
            f"service did not start: {task.exception() if task.done() else 'timeout'}"
        )
    running = ready.result()
    service = Service(running.url, running.port, data_dir, stop, task)
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with embedded_service(tmp_path / "data") as s:
        yield s


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """One nx-27017 server for the session (its process outlives any one event loop)."""
    server = MongoServer(tmp_path_factory.mktemp("mongo"))
    asyncio.run(server.start())
    yield server
    asyncio.run(server.stop())


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One Kafka broker for the session; tests create their own topics."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), num_partitions=3,
                         extra_properties=FAST_GROUPS)  # fmt: skip
    asyncio.run(broker.start())
    yield broker
    asyncio.run(broker.stop())
