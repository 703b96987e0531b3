"""The limits of live delivery (the ``[live]`` settings section), its close codes and counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_TOO_SLOW = 4008
MAX_HZ_LIMIT = 1_000.0
#: the largest sequence number a client may send back: JavaScript's largest exact integer
MAX_SEQ = 2**53 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConfig:
    """Limits of live delivery; the ``[live]`` settings section."""

    history_messages: int = 1_000  # per channel, for resume
    history_age_ms: int = 300_000  # and no older than this
    send_buffer_messages: int = 1_000  # waiting messages past which tick updates are conflated
    send_buffer_bytes: int = 1_048_576  # waiting bytes past which a client is closed (4008)
    stall_timeout_ms: int = 30_000  # a socket that accepts nothing this long is closed (4008)
    heartbeat_ms: int = 20_000  # websocket ping interval; no pong within half of it: closed
    max_channels: int = 64  # per connection
    max_message_bytes: int = 65_536  # largest message a client may send (1009 past it)
    max_channels_per_message: int = 100  # channels one subscribe or unsubscribe may name
    max_messages_per_s: float = 20.0  # messages a connection may send a second; 0: no limit
    message_burst: int = 40  # messages it may send at once before that rate applies
    #: the kernel's send buffer of a websocket or event stream (SO_SNDBUF, which Linux doubles);
    #: 0: the system's own, which grows by itself (to megabytes) for a client that reads nothing
    socket_send_buffer_bytes: int = 65_536


class Counters(Protocol):
    """Process-wide counts of what live delivery did besides sending (``metrics.LiveCounters``)."""

    conflated: int
    dropped: int
    slow_closed: int


@dataclass(slots=True)
class Counts:
    """``Counters`` of one hub or client alone, where no process-wide ones are given."""

    conflated: int = 0
    dropped: int = 0
    slow_closed: int = 0
