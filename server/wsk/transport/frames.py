"""RFC 6455 framing, as a server speaks it: the handshake's answer, frames out, frames in.

No extension is negotiated, so frames are never compressed. Everything here is
plain computation on bytes: no sockets, no library internals.

Reading is linear in what the client sends. A message in fragments is kept as
a list of parts with a running size, joined once at its final fragment; the
number of fragments is bounded as well as the size, so that zero-length
fragments cannot make a message of unbounded work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
# close codes (RFC 6455, 7.4.1)
NORMAL, PROTOCOL_ERROR, UNACCEPTABLE, NOT_UTF8, POLICY, TOO_BIG = 1000, 1002, 1003, 1007, 1008, 1009


class Frame(bytes):
    """The bytes of one or more websocket frames, ready to be written as they are."""

    __slots__ = ()


class ProtocolViolation(Exception):
    """The client broke RFC 6455 or Engine.IO; the websocket closes with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def frame(opcode: int, payload: bytes) -> Frame:
    """An unmasked, final, uncompressed frame (RFC 6455, 5.2), as a server sends it."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 0x10000:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return Frame(header + payload)


def close_frame(code: int) -> Frame:
    return frame(OP_CLOSE, code.to_bytes(2, "big"))


def unmask(payload: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask``, done on whole integers."""
    length = len(payload)
    if not length:
        return b""
    keystream = (bytes(mask) * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(
        length, "little"
    )


def parse(buf: bytes | bytearray, max_size: int) -> tuple[list[tuple[int, int, bytes]], int]:
    """The complete client frames at the start of ``buf``, and how many bytes they took.

    Each frame is ``(fin, opcode, unmasked payload)``. What follows the last
    complete frame is left for the next read. Raises ProtocolViolation for a frame
    that is unmasked, uses reserved bits or is larger than ``max_size``.
    """
    frames = []
    end = len(buf)
    pos = 0
    while end - pos >= 2:
        first, second = buf[pos], buf[pos + 1]
        length = second & 0x7F
        head = pos + 2
        if length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(buf[head : head + 2], "big")
            head += 2
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(buf[head : head + 8], "big")
            head += 8
        if not second & 0x80:
            raise ProtocolViolation(PROTOCOL_ERROR, "a client frame must be masked")
        if first & 0x70:
            raise ProtocolViolation(PROTOCOL_ERROR, "reserved bits set, no extension was agreed")
        if length > max_size:
            raise too_big(max_size)
        stop = head + 4 + length
        if stop > end:
            break
        frames.append(
            (first & 0x80, first & 0x0F, unmask(buf[head + 4 : stop], buf[head : head + 4]))
        )
        pos = stop
    return frames, pos


def too_big(max_size: int) -> ProtocolViolation:
    return ProtocolViolation(TOO_BIG, f"message over {max_size} bytes")


class Fragments:
    """A message arriving in fragments: its parts and their running size, both bounded."""

    __slots__ = ("max_count", "max_size", "opcode", "parts", "size")

    def __init__(self, opcode: int, first: bytes, max_size: int, max_count: int) -> None:
        self.opcode = opcode
        self.parts = [first]
        self.size = len(first)
        self.max_size = max_size
        self.max_count = max_count

    def add(self, payload: bytes) -> None:
        """Add the next fragment; ProtocolViolation past the size or the number of fragments."""
        self.size += len(payload)
        if self.size > self.max_size:
            raise too_big(self.max_size)
        if len(self.parts) >= self.max_count:
            raise ProtocolViolation(TOO_BIG, f"message in more than {self.max_count} fragments")
        self.parts.append(payload)

    def join(self) -> bytes:
        return b"".join(self.parts)


def handshake_problem(environ: dict[str, Any]) -> str | None:
    """Why an upgrade request is not a websocket handshake this server takes; None if it is."""
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return "not a websocket upgrade"
    connection = {part.strip() for part in environ.get("HTTP_CONNECTION", "").lower().split(",")}
    if "upgrade" not in connection:
        return "a websocket handshake needs Connection: Upgrade"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return "only websocket version 13 is supported"
    raw = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    try:
        key = base64.b64decode(raw.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        key = b""
    if len(key) != 16:
        return "bad Sec-WebSocket-Key"
    return None


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key (checked first)."""
    # SHA-1 is what RFC 6455 prescribes here; it protects nothing
    digest = hashlib.sha1(key.encode("ascii") + GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")
