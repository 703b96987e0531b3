"""The vendors board: the latest ``VendorStatus`` of every vendor, read from the ``vendors`` topic.

Ingest publishes each feed's status about every second; every web node reads the topic with its
own group-less consumer and keeps the newest per vendor, so ``GET /api/v1/vendors`` answers the
same in one process or many.
"""

from __future__ import annotations

import logging

from stream.contract import Consumer, DecodeError, VendorStatus, decode_vendor_status

log = logging.getLogger(__name__)

#: A status older than this means the ingest process that sent it stopped reporting.
REPORTING_MS = 10_000


class VendorBoard:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.latest: dict[str, VendorStatus] = {}

    async def run(self) -> None:
        while True:
            for rec in await self.consumer.poll(max_records=1_000, timeout_ms=1_000):
                try:
                    status = decode_vendor_status(rec.value)
                except DecodeError as exc:
                    log.warning("ignoring a bad vendor status: %s", exc)
                    continue
                self.latest[status.name] = status


def vendor_public(s: VendorStatus, now_ms: int) -> dict[str, object]:
    """What ``GET /api/v1/vendors`` shows for one vendor at ``now_ms``."""
    age = None if s.last_message_ms is None else max(0, now_ms - s.last_message_ms)
    return {
        "name": s.name,
        "kind": s.kind,
        "profile": s.profile,
        "connected": s.connected,
        "stale": s.stale,
        "last_message_age_ms": age,
        "messages": s.messages,
        "published": s.published,
        "rejects": s.rejects,
        "duplicates": s.duplicates,
        "gaps": s.gaps,
        "missed": s.missed,
        "seq_resets": s.seq_resets,
        "heartbeats": s.heartbeats,
        "errors": s.errors,
        "reconnects": s.reconnects,
        "last_error": s.last_error,
        "reporting": now_ms - s.ts_ms <= REPORTING_MS,
        "status_ms": s.ts_ms,
    }
