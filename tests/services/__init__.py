"""Real servers for tests: an Apache Kafka broker and the nx-27017 MongoDB wire-protocol server.

``tests.services.kafka.KafkaBroker`` and ``tests.services.mongo.MongoServer`` start a real
server process on 127.0.0.1 and free ports, wait until a real client can talk to it, and can be
stopped, killed and started again on the same port and data (for fault tests). This module holds
what both share. A server that cannot be started is a ``ServiceError`` with the server's log
tail, never a skip.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A test server could not be set up, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, timeout: float = 0.2) -> bool:
    """True when 127.0.0.1:port accepts a TCP connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(*paths: Path, lines: int = 40) -> str:
    """For error messages: each existing log's ERROR/FATAL lines (first 20) and last lines."""
    parts: list[str] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        all_lines = text.splitlines()
        errors = [line for line in all_lines if " ERROR " in line or " FATAL " in line][:20]
        if errors:
            parts.append(f"--- ERROR/FATAL lines of {path} ---\n" + "\n".join(errors))
        parts.append(f"--- last {lines} lines of {path} ---\n" + "\n".join(all_lines[-lines:]))
    return "\n".join(parts) if parts else "(no log written)"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


_live: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()


def spawn(
    argv: list[str], *, cwd: Path, output: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process, its stdout and stderr appended to ``output``.

    Call it from the thread that stays alive (the event loop's): the child is told to die with
    the thread that forked it. Whatever is still running when the interpreter exits is killed.
    """
    with output.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,  # only calls prctl: safe enough next to threads
        )
    _live.add(proc)
    return proc


async def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to ``seconds`` for the process to exit; True if it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while proc.poll() is None:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def terminate(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; True if it stopped on SIGTERM."""
    if proc.poll() is not None:
        return True
    proc.terminate()
    if await wait_exit(proc, grace):
        return True
    proc.kill()
    await wait_exit(proc, 10)
    return False


async def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap."""
    if proc.poll() is None:
        proc.kill()
    await wait_exit(proc, 10)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


class ServerProcess:
    """What both test servers share: one child process on a port it keeps across restarts.

    A subclass names its log files (``log_name``), builds its command line and implements
    ``_wait_ready``; ``_launch`` starts the process, waits until it serves and times it.
    """

    label = "server"  # for messages
    log_name = "server"  # its log is ``workdir/<log_name>.log``, its output ``.out``
    log_lines = 40
    stop_grace_s = 10.0

    def __init__(self, workdir: Path, *, startup_timeout: float) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = 0
        self.start_seconds: float | None = None
        """How long the last ``start()`` took."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.log_name}.log"

    @property
    def out_file(self) -> Path:
        return self.workdir / f"{self.log_name}.out"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self, lines: int | None = None) -> str:
        """The tail of the server's log and its own output."""
        return log_tail(self.log_file, self.out_file, lines=lines or self.log_lines)

    async def _launch(self, argv: list[str], *, started: float) -> float:
        """Spawn ``argv``, wait until it serves (killing it if it does not); the seconds taken."""
        self._proc = spawn(argv, cwd=self.workdir, output=self.out_file)
        try:
            await self._wait_ready(started + self.startup_timeout)
        except BaseException:
            await kill(self._proc)
            raise
        self.start_seconds = time.monotonic() - started
        return self.start_seconds

    async def _wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM and wait for the process to exit; SIGKILL after ``grace`` seconds."""
        grace = self.stop_grace_s if grace is None else grace
        if self._proc is not None and not await terminate(self._proc, grace):
            sys.stderr.write(f"{self.label} did not stop in {grace} s; killed it\n")

    async def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        if self._proc is not None:
            await kill(self._proc)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> float:
        raise NotImplementedError
