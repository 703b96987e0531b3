"""A MongoDB wire-protocol server for tests: ``nx-27017`` (PyPI), backed by SQLite files.

No MongoDB server can be installed on the build machines, so the MongoDB adapter is tested
against nx-27017 over a real socket with the real driver (pymongo's ``AsyncMongoClient``).
``MongoServer(workdir)`` runs nx-27017's ``main()`` in the foreground on 127.0.0.1
and a free port, one SQLite file per logical database under ``workdir/data`` (so data survives
``stop()`` / ``kill()`` and ``start()`` again, on the same port). ``start()`` returns when the
driver's ``ping`` works. Its log is ``workdir/nx-27017.log``.

What nx-27017 does differently from MongoDB is listed in README ("MongoDB in tests"); the
adapter keeps to what MongoDB itself supports.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.services import ServerProcess, ServiceError, free_port, port_open

NX_REQUIREMENT = "nx-27017==0.8.1"


class MongoServer(ServerProcess):
    """One nx-27017 server on 127.0.0.1; see the module docstring.

    Use ``async with MongoServer(tmp_path) as mongo:`` or ``await start()`` / ``await stop()``.
    """

    label = "nx-27017"
    log_name = "nx-27017"

    def __init__(self, workdir: Path | None = None, *, startup_timeout: float = 30.0) -> None:
        workdir = Path(workdir or tempfile.mkdtemp(prefix="pricestream-mongo-"))
        super().__init__(workdir, startup_timeout=startup_timeout)

    @property
    def uri(self) -> str:
        if not self.port:
            raise ServiceError("the MongoDB test server has not been started yet")
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def client(self, **kwargs: Any) -> AsyncMongoClient[dict[str, Any]]:
        """An ``AsyncMongoClient`` for this server (close it when done)."""
        options: dict[str, Any] = {"serverSelectionTimeoutMS": 5000, "tz_aware": True}
        options.update(kwargs)
        return AsyncMongoClient(self.uri, **options)

    async def start(self) -> float:
        """Start the server (again, on the same port and data) and wait until ping works."""
        if self.running:
            raise ServiceError(f"the MongoDB test server at {self.uri} is already running")
        if importlib.util.find_spec("nx_27017") is None:
            raise ServiceError(
                f"nx-27017 is not installed in {sys.prefix}; the MongoDB tests need it: "
                f"pip install '{NX_REQUIREMENT}' (it is in the dev extras: pip install -e '.[dev]')"
            )
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if port_open(self.port):
            raise ServiceError(f"port {self.port} on 127.0.0.1 is taken; cannot start nx-27017")
        pid_file = self.workdir / "nx-27017.pid"
        pid_file.unlink(missing_ok=True)  # left by a kill(); nx-27017 refuses to start if live
        argv = [
            sys.executable,
            "-c",  # not -m nx_27017.nx_27017: the package imports it first (runpy warns)
            "from nx_27017.nx_27017 import main; main()",
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--data-dir", str(self.data_dir), "--db", str(self.data_dir / "default.db")),
            *("--log-file", str(self.log_file), "--pid-file", str(pid_file)),
        ]
        return await self._launch(argv, started=started)

    async def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        last_error = "port not open yet"
        while True:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"nx-27017 exited with code {self._proc.returncode} while starting\n"
                    f"{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"nx-27017 at {self.uri} did not answer ping after "
                    f"{self.startup_timeout:.0f} s ({last_error})\n{self.logs()}"
                )
            if port_open(self.port):
                client = self.client(serverSelectionTimeoutMS=1000)
                try:
                    await client.admin.command("ping")
                    return
                except Exception as e:
                    last_error = f"{type(e).__name__}: {e}"
                finally:
                    await client.close()
            await asyncio.sleep(0.05)


__all__ = ["NX_REQUIREMENT", "MongoServer"]
