"""The render worker process: receives batches of jobs on a socket, answers with their bytes.

A message is ``(drops, adds, jobs)``: data sets to forget, data sets to keep (``(key, rows)``,
sent once per worker and data version) and jobs ``(job_id, job, data_key)``, each job a
``RenderJob``. With a cache directory the worker
first looks for ``cache_name`` there (another node may have rendered it) and otherwise writes
what it renders, atomically (a temporary file in the same directory, then ``os.replace``), so
the event loop of the web process never touches the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

from render.charts import render_chart
from render.raster import font
from render.snapshots import render_snapshot
from render.spec import ChartSpec, SnapshotSpec
from render.svg import digit_table
from stream.contract import Tick

log = logging.getLogger(__name__)

READY = b"ready"


class RenderJob(NamedTuple):
    """One chart or snapshot for a worker to render from a data set it holds (pickled).

    A named tuple, not a slotted dataclass: it pickles as a tuple, in C. A frozen, slotted
    dataclass pickles through ``dataclasses``' Python ``__getstate__``, which cost the web
    process about 20 more function calls a chart.
    """

    spec: ChartSpec | SnapshotSpec
    #: the symbol's newest tick time: where the chart ends, what the snapshot is as of
    as_of_ms: int
    #: the newest tick, which a snapshot quotes (None for a chart)
    latest: Tick | None = None
    #: the file name in the shared cache directory, or None to render in memory only
    cache_name: str | None = None


def run_job(job: RenderJob, rows: object, cache_dir: Path | None) -> bytes:
    spec, cache_name = job.spec, job.cache_name
    path = cache_dir / cache_name if cache_dir is not None and cache_name else None
    if path is not None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as exc:  # an unreadable shared directory must not fail the render
            log.warning("cannot read %s from the cache directory: %s", path.name, exc)
    if isinstance(spec, ChartSpec):
        body = render_chart(spec, rows, job.as_of_ms)  # type: ignore[arg-type]
    else:
        assert isinstance(spec, SnapshotSpec)
        body = render_snapshot(spec, rows, job.latest, job.as_of_ms)  # type: ignore[arg-type]
    if path is not None:
        write_atomically(path, body)
    return body


def write_atomically(path: Path, body: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # unique: one writer per pid
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:  # a full or unreachable shared directory must not fail the render
        log.warning("cannot write %s to the cache directory: %s", path.name, exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def serve_socket(sock: socket.socket, cache_dir: Path | None) -> None:
    """``serve`` over one end of a socket pair.

    A worker ignores SIGINT: a terminal's Ctrl-C reaches every process of its foreground group,
    and the parent, which handles it, stops its workers itself (closing their sockets).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(sock.detach()), cache_dir)


def serve(conn: Connection, cache_dir: Path | None) -> None:
    """The worker's main loop: until the pipe closes."""
    font(11), font(13), digit_table()  # rasterise the glyphs, build tables before "ready"
    conn.send_bytes(READY)
    data: dict[object, object] = {}
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        results: list[tuple[int, bool, bytes | str]] = []
        drops, adds, jobs = pickle.loads(message)
        for key in drops:
            data.pop(key, None)
        data.update(adds)
        for job_id, job, data_key in jobs:
            try:
                results.append((job_id, True, run_job(job, data[data_key], cache_dir)))
            except Exception as exc:  # reported to the request that asked for it
                log.exception("render failed: %r", job.spec)
                results.append((job_id, False, f"{type(exc).__name__}: {exc}"))
        conn.send_bytes(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
