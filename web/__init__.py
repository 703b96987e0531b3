"""aiohttp: the HTTP API, the websocket endpoint and the live chart page."""
