"""The live protocol's parsers as tables: what each message or channel name becomes, or the error
code it is refused with and what the message tells the client. No socket, no event loop."""

from __future__ import annotations

import pytest

from web.errors import BadRequest
from web.live.config import MAX_SEQ
from web.live.protocol import ChannelError, decode_request, parse_channel


@pytest.mark.parametrize(
    ("channel", "parsed"),
    [
        ("ticks:XAU-USD", ("ticks", "XAU-USD", None)),
        ("candles:XAG-EUR:1m", ("candles", "XAG-EUR", "1m")),
        ("candles:XAU-USD:1h", ("candles", "XAU-USD", "1h")),
    ],
)
def test_channel_names(channel: str, parsed: tuple[str, str, str | None]) -> None:
    assert parse_channel(channel) == parsed


@pytest.mark.parametrize(
    ("channel", "says"),
    [
        ("ticks", "is not 'ticks:SYMBOL' or 'candles:SYMBOL:RES'"),
        ("quotes:XAU-USD", "is not 'ticks:SYMBOL'"),
        ("ticks:XAU-USD:1m", "is not 'ticks:SYMBOL'"),
        ("candles:XAU-USD", "is not 'ticks:SYMBOL'"),
        ("candles:XAU-USD:7m", "unknown resolution in 'candles:XAU-USD:7m'; use 1s, 1m"),
        ("ticks:xau usd", "in channel 'ticks:xau usd'"),
        ("ticks:" + "X" * 500, "in channel"),
        ("x" * 500, "x" * 20),  # named, cut short
    ],
)
def test_bad_channel_names_say_what_is_wrong(channel: str, says: str) -> None:
    with pytest.raises(ChannelError) as caught:
        parse_channel(channel)
    assert caught.value.code == "bad_channel"
    assert says in str(caught.value)
    assert len(str(caught.value)) < 300


# fmt: off
REQUESTS = [
    ('{"op":"ping"}', "ping", (), {}, None),
    ('{"op":"subscribe","channels":[]}', "subscribe", (), {}, None),
    ('{"op":"subscribe","channels":["ticks:XAU-USD","candles:XAU-USD:1m"]}', "subscribe",
     ("ticks:XAU-USD", "candles:XAU-USD:1m"), {}, None),
    ('{"op":"subscribe","channels":["ticks:XAU-USD"],"since":{"ticks:XAU-USD":41}}',
     "subscribe", ("ticks:XAU-USD",), {"ticks:XAU-USD": 41}, None),
    (f'{{"op":"subscribe","channels":[],"since":{{"a":{MAX_SEQ}}}}}', "subscribe", (),
     {"a": MAX_SEQ}, None),
    ('{"op":"subscribe","channels":["ticks:XAU-USD"],"max_hz":2}', "subscribe",
     ("ticks:XAU-USD",), {}, 2.0),
    ('{"op":"subscribe","channels":[],"max_hz":1000}', "subscribe", (), {}, 1000.0),
    ('{"op":"unsubscribe","channels":["ticks:XAU-USD"]}', "unsubscribe",
     ("ticks:XAU-USD",), {}, None),
]
# fmt: on


@pytest.mark.parametrize(("text", "op", "channels", "since", "max_hz"), REQUESTS)
def test_requests(
    text: str, op: str, channels: tuple[str, ...], since: dict[str, int], max_hz: float | None
) -> None:
    req = decode_request(text)
    assert (req.op, req.channels, dict(req.since), req.max_hz) == (op, channels, since, max_hz)


def test_auth_requests_keep_their_credentials_out_of_sight() -> None:
    req = decode_request('{"op":"auth","api_key":"k-secret"}')
    assert (req.op, req.api_key, req.token) == ("auth", "k-secret", None)
    assert decode_request('{"op":"auth","token":"a.b.c"}').token == "a.b.c"
    assert "secret" not in repr(req)


# fmt: off
BAD_REQUESTS = [
    ("", "bad_json", "message is not JSON: ''"),
    ("{op:ping}", "bad_json", "message is not JSON: '{op:ping}'"),
    ("[1,2]", "bad_message", 'send an object like {"op":"subscribe"'),
    ('"subscribe"', "bad_message", "send an object"),
    ("{}", "bad_op", "unknown op 'None'; use subscribe, unsubscribe, auth or ping"),
    ('{"op":"SUBSCRIBE","channels":[]}', "bad_op", "unknown op 'SUBSCRIBE'"),
    ('{"op":"subscribe"}', "bad_message", "'channels' must be a list of channel names"),
    ('{"op":"subscribe","channels":"ticks:XAU-USD"}', "bad_message", "must be a list"),
    ('{"op":"subscribe","channels":[1]}', "bad_message", "must be a list of channel names"),
    ('{"op":"subscribe","channels":[],"sinse":{}}', "bad_message",
     "unknown field 'sinse'; allowed: channels, max_hz, op, since"),
    ('{"op":"subscribe","channels":[],"since":[]}', "bad_message",
     "'since' must map channel names to sequence numbers from 0 to"),
    ('{"op":"subscribe","channels":[],"since":{"a":-1}}', "bad_message", "'since' must"),
    ('{"op":"subscribe","channels":[],"since":{"a":true}}', "bad_message", "'since' must"),
    ('{"op":"subscribe","channels":[],"since":{"a":1.5}}', "bad_message", "'since' must"),
    (f'{{"op":"subscribe","channels":[],"since":{{"a":{MAX_SEQ + 1}}}}}', "bad_message",
     f"from 0 to {MAX_SEQ}"),
    ('{"op":"subscribe","channels":[],"max_hz":0}', "bad_message",
     "'max_hz' must be a number above 0 and at most 1000"),
    ('{"op":"subscribe","channels":[],"max_hz":1001}', "bad_message", "'max_hz' must"),
    ('{"op":"subscribe","channels":[],"max_hz":"2"}', "bad_message", "'max_hz' must"),
    ('{"op":"subscribe","channels":[],"max_hz":true}', "bad_message", "'max_hz' must"),
    ('{"op":"auth"}', "bad_message", 'send {"op":"auth","api_key":KEY}'),
    ('{"op":"auth","api_key":7}', "bad_message", 'send {"op":"auth"'),
    ('{"op":"auth","token":"t","user":"u"}', "bad_message", 'send {"op":"auth"'),
]
# fmt: on


@pytest.mark.parametrize(("text", "code", "says"), BAD_REQUESTS)
def test_bad_requests_get_a_code_and_say_what_to_send(text: str, code: str, says: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_request(text)
    assert caught.value.code == code
    assert says in str(caught.value)
