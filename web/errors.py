"""The web layer's one client error: ``BadRequest``, a request or message that breaks the rules.

Raised by the HTTP handlers (the ``json_errors`` middleware answers it with a 400 that carries
the message) and by the websocket protocol (answered with an error message carrying ``code``).
"""

from __future__ import annotations


class BadRequest(ValueError):
    """What is wrong, for the client; ``code`` names the rule on the websocket."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
