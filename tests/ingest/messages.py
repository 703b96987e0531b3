"""Vendor messages in the shapes their documentation gives, for parser and collector tests."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson


def iso(ts_ms: int, *, nanos: bool = False) -> str:
    t = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    frac = f"{ts_ms % 1000:03d}" + ("449532" if nanos else "000")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + frac + "Z"


def coinbase_ticker(product: str, bid: float, ask: float, ts_ms: int, seq: int) -> bytes:
    return orjson.dumps(
        {
            "type": "ticker", "sequence": seq, "product_id": product,
            "price": f"{(bid + ask) / 2:.2f}", "open_24h": "1310.79", "volume_24h": "245532.79",
            "low_24h": "1280.52", "high_24h": "1313.8", "volume_30d": "9788783.60",
            "best_bid": f"{bid:.2f}", "best_bid_size": "0.46688654", "best_ask": f"{ask:.2f}",
            "best_ask_size": "1.56637040", "side": "buy", "time": iso(ts_ms),
            "trade_id": 370843401, "last_size": "0.01",
        }
    )  # fmt: skip


COINBASE_SUBSCRIPTIONS = b'{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}'  # noqa: E501


def coinbase_heartbeat(ts_ms: int) -> bytes:
    return orjson.dumps(
        {"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "BTC-USD",
         "time": iso(ts_ms)}
    )  # fmt: skip


COINBASE_ERROR = (
    b'{"type":"error","message":"Failed to subscribe","reason":"ETH-XYZ is not a valid product"}'
)


def binance_book(symbol: str, bid: float, ask: float, update_id: int) -> bytes:
    return orjson.dumps(
        {"u": update_id, "s": symbol, "b": f"{bid:.8f}", "B": "31.21000000", "a": f"{ask:.8f}",
         "A": "40.66000000"}
    )  # fmt: skip


def binance_combined(symbol: str, bid: float, ask: float, update_id: int) -> bytes:
    inner = orjson.loads(binance_book(symbol, bid, ask, update_id))
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": inner})


BINANCE_ACK = b'{"result":null,"id":1}'
BINANCE_ERROR = b'{"error":{"code":2,"msg":"Invalid request: unknown variable"},"id":1}'


def oanda_price(instrument: str, bid: float, ask: float, ts_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "PRICE", "time": iso(ts_ms, nanos=True),
            "bids": [{"price": f"{bid:.3f}", "liquidity": 10000000},
                     {"price": f"{bid - 0.1:.3f}", "liquidity": 10000000}],
            "asks": [{"price": f"{ask:.3f}", "liquidity": 10000000}],
            "closeoutBid": f"{bid - 0.05:.3f}", "closeoutAsk": f"{ask + 0.05:.3f}",
            "status": "tradeable", "tradeable": True, "instrument": instrument,
        }
    )  # fmt: skip


def oanda_heartbeat(ts_ms: int) -> bytes:
    return orjson.dumps({"type": "HEARTBEAT", "time": iso(ts_ms, nanos=True)})


OANDA_ERROR = b'{"errorMessage":"Invalid value specified for \'accountID\'"}'


def twelvedata_price(symbol: str, price: float, ts_ms: int, *, spread: float = 0.3) -> bytes:
    return orjson.dumps(
        {"event": "price", "symbol": symbol, "currency_base": "Gold Spot",
         "currency_quote": "US Dollar", "exchange": "PHYSICAL CURRENCY",
         "type": "Physical Currency", "timestamp": ts_ms // 1000, "price": price,
         "bid": round(price - spread / 2, 3), "ask": round(price + spread / 2, 3)}
    )  # fmt: skip


TWELVEDATA_SUBSCRIBED = b'{"event":"subscribe-status","status":"ok","success":[{"symbol":"XAU/USD","exchange":"PHYSICAL CURRENCY","country":"","type":"Physical Currency"}],"fails":[]}'  # noqa: E501
TWELVEDATA_FAILED = (
    b'{"event":"subscribe-status","status":"error","success":[],"fails":[{"symbol":"XYZ/USD"}]}'
)
TWELVEDATA_HEARTBEAT = b'{"event":"heartbeat","status":"ok"}'
TWELVEDATA_ERROR = b'{"status":"error","code":401,"message":"apikey is invalid"}'


def gold_api_price(symbol: str, price: float, ts_ms: int) -> bytes:
    names = {"XAU": "Gold", "XAG": "Silver"}
    return orjson.dumps(
        {"name": names.get(symbol, symbol), "price": price, "symbol": symbol,
         "updatedAt": iso(ts_ms), "updatedAtReadable": "a few seconds ago"}
    )  # fmt: skip


def metals_api_latest(rates: dict[str, float], ts_ms: int) -> bytes:
    return orjson.dumps(
        {"success": True, "timestamp": ts_ms // 1000, "date": "2026-11-21", "base": "USD",
         "rates": {"USD": 1, **rates}, "unit": "per ounce"}
    )  # fmt: skip


METALS_API_ERROR = b'{"success":false,"error":{"code":101,"type":"invalid_access_key","info":"You have not supplied a valid API Access Key."}}'  # noqa: E501
