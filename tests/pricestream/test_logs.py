"""Logging: a malformed request is one short warning, not a traceback with its raw bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricestream import logs
from tests.conftest import embedded_service


@pytest.fixture
def configured_logging() -> Iterator[None]:
    root, server = logging.getLogger(), logging.getLogger("aiohttp.server")
    handlers, level, filters = root.handlers[:], root.level, server.filters[:]
    try:
        yield
    finally:
        root.handlers[:], server.filters[:] = handlers, filters
        root.setLevel(level)


@pytest.mark.usefixtures("configured_logging")
async def test_a_malformed_request_is_logged_as_one_line_without_its_bytes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure(level="info", fmt="text")
    junk = b"\x00" * 4_000
    async with embedded_service(tmp_path / "data") as service:
        port = int(service.url.rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: " + junk + b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 10)
        writer.close()
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "aiohttp.server" in line]
    assert lines, err[-2_000:]
    assert all("WARNING" in line and "bad request refused" in line for line in lines), lines
    assert "Traceback" not in err
    assert len(err) < 20_000  # not the 4,000 bytes again and again
