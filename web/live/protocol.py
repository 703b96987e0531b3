"""The live protocol's requests: channel names, client messages and the message rate, checked.

Sans-I/O: strings and decoded JSON in, values or errors out; time comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import orjson

from stream.contract import RESOLUTIONS, InvalidSymbol, check_symbol
from web.errors import BadRequest
from web.live.config import MAX_HZ_LIMIT, MAX_SEQ, LiveConfig

SUBSCRIBE_KEYS = frozenset({"op", "channels", "since", "max_hz"})
AUTH_KEYS = frozenset({"op", "api_key", "token"})


class ChannelError(ValueError):
    """A channel name that is malformed or names nothing the service knows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_channel(channel: str) -> tuple[str, str, str | None]:
    """``("ticks", symbol, None)`` or ``("candles", symbol, res)``; ``ChannelError`` otherwise."""
    parts = channel.split(":") if isinstance(channel, str) else []
    try:
        if len(parts) == 2 and parts[0] == "ticks":
            return "ticks", check_symbol(parts[1]), None
        if len(parts) == 3 and parts[0] == "candles":
            if parts[2] not in RESOLUTIONS:
                allowed = ", ".join(RESOLUTIONS)
                raise ChannelError(
                    "bad_channel", f"unknown resolution in {_named(channel)}; use {allowed}"
                )
            return "candles", check_symbol(parts[1]), parts[2]
    except InvalidSymbol as exc:
        raise ChannelError("bad_channel", f"{exc} in channel {_named(channel)}") from exc
    raise ChannelError(
        "bad_channel",
        f"channel {_named(channel)} is not 'ticks:SYMBOL' or 'candles:SYMBOL:RES'",
    )


def _named(channel: object) -> str:
    """A channel name as an error quotes it: cut short, as a client may send anything."""
    text = str(channel)
    return repr(text) if len(text) <= 60 else repr(text[:60]) + "..."


@dataclass(frozen=True, slots=True)
class Subscription:
    """A validated subscribe or unsubscribe request."""

    op: str
    channels: tuple[str, ...]
    since: Mapping[str, int]
    max_hz: float | None
    api_key: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"Subscription(op={self.op!r}, channels={self.channels!r})"


def parse_request(msg: object) -> Subscription:
    """Validate one decoded client message; ``BadRequest`` says what is wrong."""
    if not isinstance(msg, dict):
        raise BadRequest("bad_message", 'send an object like {"op":"subscribe","channels":[...]}')
    op = msg.get("op")
    if op == "ping":
        return Subscription("ping", (), {}, None)
    if op == "auth":
        if set(msg) - AUTH_KEYS or not any(
            isinstance(msg.get(k), str) for k in ("api_key", "token")
        ):
            raise BadRequest(
                "bad_message", 'send {"op":"auth","api_key":KEY} or {"op":"auth","token":JWT}'
            )
        key, token = msg.get("api_key"), msg.get("token")
        return Subscription("auth", (), {}, None, api_key=key if isinstance(key, str) else None,
                            token=token if isinstance(token, str) else None)  # fmt: skip
    if op not in ("subscribe", "unsubscribe"):
        raise BadRequest(
            "bad_op", f"unknown op {str(op)[:30]!r}; use subscribe, unsubscribe, auth or ping"
        )
    unknown = set(msg) - SUBSCRIBE_KEYS
    if unknown:
        allowed = ", ".join(sorted(SUBSCRIBE_KEYS))
        raise BadRequest(
            "bad_message", f"unknown field {sorted(unknown)[0][:30]!r}; allowed: {allowed}"
        )
    channels = msg.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise BadRequest("bad_message", "'channels' must be a list of channel names")
    since = msg.get("since", {})
    if not isinstance(since, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEQ for v in since.values()
    ):
        raise BadRequest(
            "bad_message",
            f"'since' must map channel names to sequence numbers from 0 to {MAX_SEQ}",
        )
    max_hz = msg.get("max_hz")
    if max_hz is not None and (
        isinstance(max_hz, bool)
        or not isinstance(max_hz, int | float)
        or not 0 < max_hz <= MAX_HZ_LIMIT
    ):
        raise BadRequest(
            "bad_message", f"'max_hz' must be a number above 0 and at most {MAX_HZ_LIMIT:g}"
        )
    return Subscription(op, tuple(channels), since, None if max_hz is None else float(max_hz))


def decode_request(text: str) -> Subscription:
    """Decode and validate one text message; ``BadRequest`` says what is wrong."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest("bad_json", f"message is not JSON: {text[:60]!r}") from None
    return parse_request(msg)


@dataclass(slots=True)
class MessageRate:
    """A connection's token bucket: ``per_s`` messages a second, ``burst`` at once.

    A refused message costs a token too, so the bucket goes below zero: a client that backs off
    when refused is let in again once the rate has paid back what it sent, and one that keeps
    sending sinks further. One more ``burst`` of messages below zero, ``take`` says "close".
    Pure: time comes in as an argument.
    """

    per_s: float
    burst: int
    tokens: float = field(init=False)
    at_s: float | None = field(default=None, init=False)  # the last take's time

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now_s: float) -> Literal["ok", "refused", "close"]:
        """Whether a message that arrives at ``now_s`` (seconds, any monotonic clock) is let
        in, refused, or one too many: the connection is to be closed."""
        if self.at_s is not None:
            earned = max(0.0, now_s - self.at_s) * self.per_s
            self.tokens = min(float(self.burst), self.tokens + earned)
        self.at_s = now_s
        self.tokens -= 1.0
        if self.tokens >= 0.0:
            return "ok"
        return "close" if self.tokens < -self.burst else "refused"


def rate_limit_text(config: LiveConfig) -> str:
    return (
        f"at most {config.max_messages_per_s:g} messages a second (max_messages_per_s), "
        f"{config.message_burst} at once (message_burst): this message and those that follow "
        "within the rate are refused; keep sending past it and the connection is closed (1008)"
    )
