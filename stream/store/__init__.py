"""Store adapters: ``sqlite`` (embedded, durable, the default) and ``mongo`` (MongoDB)."""

from stream.contract import RESOLUTIONS
from stream.contract.resolutions import DAY_MS

#: How long candles of each resolution are kept by default (None: forever).
DEFAULT_RETENTION_MS: dict[str, int | None] = {
    "1s": 2 * DAY_MS,
    "1m": 90 * DAY_MS,
    "5m": 365 * DAY_MS,
    "15m": 2 * 365 * DAY_MS,
    "1h": 6 * 365 * DAY_MS,
    "4h": None,
    "1d": None,
}

assert set(DEFAULT_RETENTION_MS) == set(RESOLUTIONS)
