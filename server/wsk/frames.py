"""RFC 6455 framing, as a server speaks it: frames out, the handshake's answer, unmasking.

No extension is negotiated, so frames are never compressed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


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


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask``, done on whole integers."""
    length = len(payload)
    if not length:
        return b""
    keystream = (bytes(mask) * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(
        length, "little"
    )


def handshake_problem(environ: dict[str, Any]) -> str | None:
    """Why an upgrade request is not a websocket handshake this server takes; None if it is."""
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return "not a websocket upgrade"
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return "only websocket version 13 is supported"
    try:
        key = base64.b64decode(environ.get("HTTP_SEC_WEBSOCKET_KEY", ""), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 16:
        return "bad Sec-WebSocket-Key"
    return None


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key."""
    # SHA-1 is what RFC 6455 prescribes here; it protects nothing
    digest = hashlib.sha1(key.encode("ascii") + GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")
