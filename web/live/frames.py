"""Websocket frames as bytes: the server's text frames, and the check that a client's are masked.

RFC 6455 section 5.2. Sans-I/O: bytes in, bytes or counts out.
"""

from __future__ import annotations

import functools


class FrameMasks:
    """Follows the frame headers in the bytes a client sends (RFC 6455 section 5.2) to find the
    first frame that is not masked. Sans-I/O: bytes in, a count out; it passes over payloads
    without reading them."""

    def __init__(self) -> None:
        self._head = bytearray()  # the start of a frame header split across reads
        self._skip = 0  # bytes of the current frame (mask key and payload) still to come
        self.unmasked = False  # a frame without a mask was seen; the stream is bad from there

    def feed(self, data: bytes) -> int:
        """How many of ``data``'s bytes belong to masked frames: all of them, or up to where the
        first unmasked frame's header starts (0 if it started in an earlier read, or earlier)."""
        if self.unmasked:
            return 0
        head, pos, end = self._head, 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            began = pos - len(head)  # where this header started in data; < 0: in an earlier read
            need = 2 if len(head) < 2 else header_bytes(head[1])
            take = min(need - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) < need:
                continue
            if need == 2:
                if not head[1] & 0x80:
                    self.unmasked = True
                    head.clear()
                    return max(began, 0)
                if header_bytes(head[1]) > 2:
                    continue  # then the extended length
            size = head[1] & 0x7F
            if size >= 126:
                size = int.from_bytes(head[2:], "big")
            self._skip = 4 + size  # the mask key, then the payload
            head.clear()
        return end


def header_bytes(second: int) -> int:
    """A frame header's length up to its mask key, from its second byte (the length field)."""
    size = second & 0x7F
    return 4 if size == 126 else 10 if size == 127 else 2


@functools.lru_cache(maxsize=256)
def text_frame(text: str) -> bytes:
    """One unmasked, uncompressed, final websocket text frame (RFC 6455 section 5.2); cached,
    as one update goes to every subscriber of its channel in a row."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65_536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + data
    return b"\x81\x7f" + n.to_bytes(8, "big") + data


@functools.lru_cache(maxsize=64)
def text_frames(texts: tuple[str, ...]) -> bytes:
    """The frames of several updates, back to back: one write for every subscriber."""
    return b"".join([text_frame(text) for text in texts])
