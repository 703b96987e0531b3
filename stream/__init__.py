"""The data plane and the shared contract: ticks in, rolling OHLC candles out.

``stream`` is the bottom layer: it imports none of ``ingest``, ``render`` or ``web``.
"""
