"""Live delivery: the hub that fans ``updates`` out to websocket and SSE clients.

The parts: ``protocol`` (channel names and client requests, checked), ``outbox`` (what waits
for one client: queueing, conflation, throttle; no I/O), ``client`` (a connection's outbox on
the event loop), ``hub`` (bus in, fan-out, resume history), ``frames`` and ``guard`` (websocket
bytes and the socket under them) and ``websocket`` (the ``/ws`` endpoint). ``web.sse`` is the
other transport.

Channels are ``ticks:SYMBOL`` and ``candles:SYMBOL:RES``. On subscribe a client first gets a
snapshot with the channel's current sequence number, then every update with the next numbers;
sequence numbers come from the stream worker that owns the symbol, so every web node numbers a
channel the same way.

Resume: the hub keeps a bounded, contiguous history of each channel's recent update messages
(``LiveConfig.history_messages`` and ``history_age_ms``). A subscribe with ``since`` gets exactly
the messages after that number, announced by a ``subscribed`` message with ``"recovered": true``;
when the history no longer reaches back that far, a fresh snapshot with ``"recovered": false``.

Delivery never awaits a client in the fan-out: each client has an outbox that its own pump task
drains. The outbox is bounded. Past ``send_buffer_messages`` waiting messages, tick updates are
conflated (only the newest per channel waits); candle updates for the same bucket always collapse
into the newest; a subscription with ``max_hz`` gets at most that many messages a second, the
newest each time. An update that follows a skipped sequence number carries ``"conflated": true``.
Past ``send_buffer_bytes`` waiting bytes, or when the socket has not accepted a message for
``stall_timeout_ms``, the client is closed with code 4008. Both count only what the socket did
not take, so a websocket's kernel send buffer is bounded too (``socket_send_buffer_bytes``):
left to itself, loopback's grows to megabytes per connection before anything waits here.

Credentials: a connection that authenticated with a token holds private channels only while the
token is valid. Every subscribe to a private channel checks it again, and a timer at the token's
expiry closes a connection that still holds private channels with 4001 (re-authenticating with
``{"op":"auth",...}`` before then moves the timer).

What a client may ask of the server is bounded: ``max_channels_per_message`` channels in one
subscribe or unsubscribe, ``max_channels`` on one connection, and ``max_messages_per_s`` messages
a second with bursts of ``message_burst`` (``MessageRate``). Past a limit the message is refused
with an error that names the limit; a client that goes on sending while refused is closed with
1008.

Frames from a client must be masked (RFC 6455 section 5.1); aiohttp's reader does not check, so
``MaskedFramesOnly`` sits between the socket and aiohttp and fails a connection that sends an
unmasked frame: a close frame with 1002, then the TCP connection is closed, before the frame is
read.

Close codes: 1001 server going away (reconnect elsewhere), 1002 an unmasked frame, 1008 too many
messages, 1009 message too big, 4001 the token expired while the connection held private
channels, 4008 client too slow. A client that does not answer a ping within ``heartbeat_ms / 2``
gets no close frame: the connection is dropped (aiohttp's heartbeat, then an abort here), which
clients report as 1006.
"""

from web.live.client import Client
from web.live.config import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_SLOW,
    MAX_HZ_LIMIT,
    MAX_SEQ,
    Counters,
    LiveConfig,
)
from web.live.frames import FrameMasks
from web.live.hub import Hub, newest_candles
from web.live.outbox import Outbox
from web.live.protocol import ChannelError, MessageRate, Subscription, parse_channel, parse_request
from web.live.websocket import WsClient, serve_client

__all__ = [
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TOO_SLOW",
    "MAX_HZ_LIMIT",
    "MAX_SEQ",
    "ChannelError",
    "Client",
    "Counters",
    "FrameMasks",
    "Hub",
    "LiveConfig",
    "MessageRate",
    "Outbox",
    "Subscription",
    "WsClient",
    "newest_candles",
    "parse_channel",
    "parse_request",
    "serve_client",
]
