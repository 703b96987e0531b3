"""Collectors: vendor messages in, validated ticks and one composite price onto the bus.

- ``vendors/``: one module per vendor format, each a pure ``parse(raw) -> Parsed``.
- ``validate.py`` (the gate) and ``composite.py``: pure, the time is an argument.
- ``feed.py``: ``Feed`` (parse, map, gate, dead-letter, count); ``publisher.py``: ``Publisher``
  (ticks, composite ticks and dead letters to the bus); ``collector.py``: backoff, the vendor
  status reporter and the simulator collector. ``websocket.py``, ``http.py``, ``replay.py`` and
  the simulator collector are the I/O shells of the collector kinds.
- ``config.py`` checks ``[[vendors]]`` tables; ``service.py`` builds and runs the collectors.

Errors: ``config.VendorConfigError`` (a ``ValueError``) names the bad table and key. Parsers
raise nothing: ``vendors.base.Reject`` stays inside them and becomes a reject with its reason.
Collectors never stop on input or network failures: they count, dead-letter, back off and retry.
"""
