"""The ``cluster`` fixture: role processes on the session's broker and MongoDB server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.distributed import Cluster
from tests.services.kafka import KafkaBroker
from tests.services.mongo import MongoServer


@pytest.fixture
async def cluster(
    tmp_path: Path, kafka_broker: KafkaBroker, mongo_server: MongoServer
) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, kafka_broker, mongo_server)
    yield c
    await c.close()
