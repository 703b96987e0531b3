"""Logging set-up: readable text for a terminal, one JSON object per line for machines."""

from __future__ import annotations

import logging
import sys
from typing import ClassVar

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from web.middleware import RequestIdFilter


class JsonFormatter(logging.Formatter):
    _SKIP: ClassVar[set[str]] = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts_ms": int(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update((k, v) for k, v in vars(record).items() if k not in self._SKIP)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class BadRequestLines(logging.Filter):
    """aiohttp logs every malformed request at ERROR with a traceback and the raw bytes (325 KB
    of log for ten requests with an 8 KB bad header): one short warning line instead. The
    client got its 400 already; nothing failed on our side."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "bad request refused: %s", (str(exc.message)[:120],)
            record.exc_info, record.exc_text = None, None
        return True


def configure(*, level: str, fmt: str, access: bool = True) -> None:
    """Log to stderr at ``level`` in ``fmt``; ``access``: a line per HTTP request too."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(RequestIdFilter())  # the request id on what is logged while handling one
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # web.access replaces it
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, BadRequestLines)]
    server.addFilter(BadRequestLines())
    logging.getLogger("web.access").setLevel(logging.NOTSET if access else logging.WARNING)
