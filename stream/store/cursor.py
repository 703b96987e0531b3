"""Page cursors of the stores: the sort key of a page's last item as an opaque URL-safe string.

A cursor is the JSON pair ``[ts_ms, key]`` in unpadded URL-safe base64. Decoding checks its
length, its characters and the pair's types (64-bit integers, and the key's type), so a cursor
from elsewhere is a ``DecodeError`` that quotes it, never an exception of the decoder.
"""

from __future__ import annotations

import base64
from typing import Annotated, Generic, TypeVar

import msgspec

from stream.contract import DecodeError

K = TypeVar("K", int, str)
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
MAX_CHARS = 200


class PageCursor(Generic[K]):
    """Cursors whose key is of ``key_type`` (``Int64`` or ``str``); ``what`` names them in
    errors."""

    def __init__(self, key_type: object, what: str) -> None:
        self.what = what
        self._dec: msgspec.json.Decoder[tuple[int, K]] = msgspec.json.Decoder(
            tuple[Int64, key_type]  # type: ignore[valid-type]
        )

    def encode(self, ts_ms: int, key: K) -> str:
        return base64.urlsafe_b64encode(msgspec.json.encode((ts_ms, key))).decode().rstrip("=")

    def decode(self, text: str) -> tuple[int, K]:
        try:
            if len(text) > MAX_CHARS:
                raise ValueError(f"longer than {MAX_CHARS} characters")
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
            return self._dec.decode(raw)
        except ValueError as exc:  # binascii.Error and msgspec's errors are ValueErrors
            raise DecodeError(f"not a {self.what} of this store: {text[:40]!r}") from exc
