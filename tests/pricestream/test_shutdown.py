"""SIGTERM, as an orchestrator sends it, to real ``pricestream`` processes.

Every role stops accepting connections, tells websocket clients to reconnect elsewhere (close
code 1001), drains and exits 0. The distributed tests SIGTERM the ingest, stream and web roles
on Kafka; these cover the all-in-one process and the render role, which need no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

PYTHON = sys.executable


@asynccontextmanager
async def started(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "pricestream", *args, "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no URL printed: {line!r}"
        yield match.group(1), proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def terminate(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM; the process must exit 0 within 20 s. Its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text[-3_000:]
    return text


def children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        found = children(todo.pop())
        out |= found
        todo += found
    return out


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}/stat").exists()}


async def refused(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "healthz") as resp:
            await resp.read()
    except aiohttp.ClientConnectionError:
        return True
    return False


async def test_sigterm_tells_websocket_clients_to_reconnect_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    async with started("run", "--data-dir", str(tmp_path / "data")) as (url, proc):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url.replace("http", "ws") + "ws") as ws,
        ):
            await ws.send_json({"op": "subscribe", "channels": ["ticks:XAU-USD"]})
            for _ in range(100):  # the simulator's first prices take a moment
                msg = await ws.receive_json(timeout=10)
                if msg["type"] == "update":
                    break
                if msg["type"] == "error":
                    await asyncio.sleep(0.1)
                    await ws.send_json({"op": "subscribe", "channels": ["ticks:XAU-USD"]})
            assert msg["type"] == "update", msg
            proc.send_signal(signal.SIGTERM)
            while not ws.closed:
                await ws.receive(timeout=10)
            assert ws.close_code == 1001
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        text = err.decode(errors="replace")
        assert proc.returncode == 0, text[-3_000:]
        assert "draining" in text
        assert "stopped" in text
        assert re.search(r"web\.access: GET /ws 101 .* id=[0-9a-f]{32}", text), text[-3_000:]
        assert await refused(url)


async def test_the_render_role_stops_its_workers_on_sigterm(tmp_path: Path) -> None:
    env = {"PRICESTREAM_STORAGE_DATA_DIR": str(tmp_path / "data")}
    async with started("render", env=env) as (url, proc):
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "healthz") as resp:
                assert resp.status == 200
            async with http.get(url + "metrics") as resp:
                assert "pricestream_render_queue_depth" in await resp.text()
        # the render workers (forked by multiprocessing's fork server) and its helpers
        workers = descendants(proc.pid)
        assert len(workers) >= 4, f"render worker processes missing: {workers}"
        text = await terminate(proc)
    assert "stopped" in text
    assert await refused(url)
    for _ in range(50):  # the fork server and its helpers exit once the parent is gone
        if not alive(workers):
            break
        await asyncio.sleep(0.1)
    assert not alive(workers), f"render processes left running: {alive(workers)}"


def _read_pty(fd: int, until: float) -> bytes:
    """What the terminal shows until the other side closes or ``until`` (monotonic) passes."""
    out = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65_536)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        out += chunk
    return out


def test_ctrl_c_in_a_terminal_stops_run_cleanly_without_a_traceback(tmp_path: Path) -> None:
    """As a user's Ctrl-C does: SIGINT to the whole foreground process group of a terminal,
    render workers included."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its terminal
        argv = [PYTHON, "-m", "pricestream", "run", "--port", "0", "--data-dir",
                str(tmp_path / "data")]  # fmt: skip
        os.execve(PYTHON, argv, env)
    try:
        shown = b""
        deadline = time.monotonic() + 60
        while b"is running" not in shown and time.monotonic() < deadline:
            shown += _read_pty(fd, time.monotonic() + 0.5)
        assert b"is running" in shown, shown.decode(errors="replace")[-3_000:]
        time.sleep(1)  # the render workers are up and serving
        os.killpg(os.getpgid(pid), signal.SIGINT)
        shown += _read_pty(fd, time.monotonic() + 30)
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.close(fd)
    text = shown.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-3_000:]
    assert "Traceback" not in text, text[-3_000:]
    assert "KeyboardInterrupt" not in text, text[-3_000:]
    assert "died" not in text, text[-3_000:]
    assert "stopped" in text
