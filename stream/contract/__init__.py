"""The shared contract: values, codecs, resolutions, ports and errors."""

from stream.contract.codec import (
    Update,
    decode_candle,
    decode_deadletter,
    decode_tick,
    decode_update,
    encode_candle,
    encode_deadletter,
    encode_tick,
    encode_update,
)
from stream.contract.errors import (
    DecodeError,
    InvalidSymbol,
    PricestreamError,
    StoreError,
    UnknownResolution,
)
from stream.contract.model import Candle, DeadLetter, Tick, check_symbol, tick_public
from stream.contract.ports import (
    DEADLETTER,
    TICKS,
    UPDATES,
    Bus,
    Consumer,
    Producer,
    Record,
    Store,
    SymbolState,
)
from stream.contract.resolutions import (
    RESOLUTIONS,
    DailyBoundary,
    bucket_bounds,
    check_resolution,
)

__all__ = [
    "DEADLETTER",
    "RESOLUTIONS",
    "TICKS",
    "UPDATES",
    "Bus",
    "Candle",
    "Consumer",
    "DailyBoundary",
    "DeadLetter",
    "DecodeError",
    "InvalidSymbol",
    "PricestreamError",
    "Producer",
    "Record",
    "Store",
    "StoreError",
    "SymbolState",
    "Tick",
    "UnknownResolution",
    "Update",
    "bucket_bounds",
    "check_resolution",
    "check_symbol",
    "decode_candle",
    "decode_deadletter",
    "decode_tick",
    "decode_update",
    "encode_candle",
    "encode_deadletter",
    "encode_tick",
    "encode_update",
    "tick_public",
]
