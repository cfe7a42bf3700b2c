"""Engine.IO 3 (socket.io-client 2.x) beside Engine.IO 4, with ``--allow-eio3``.

python-engineio 4 dropped protocol 3, and Node's socket.io 4 keeps it behind
``allowEIO3``. What differs (engine.io-protocol v3 against v4, and
engine.io-parser 2 as socket.io-client 2.5 uses it):

- the handshake's OPEN packet has no ``maxPayload``, and its ``pingInterval`` is
  the interval itself;
- the *client* pings (``2``) every ``pingInterval`` and the server answers (``3``);
  a client that has not pinged for ``pingInterval + pingTimeout`` is gone;
- a long-polling payload is ``<length>:<packet>`` repeated, the length in UTF-16
  code units (JavaScript's ``String.length``); a binary packet in a text payload
  is ``b4<base64>``. A client with XHR2 may POST a binary payload instead
  (``application/octet-stream``: per packet a 0 or 1 byte, the length as one byte
  per decimal digit, 255, then the packet, a binary one starting with its type
  byte). This server always answers in text, which every client decodes, so the
  ``b64=1`` a client without XHR2 asks for is always honoured;
- over a websocket, a binary message starts with its packet type byte (4).

The Socket.IO 2 side (an implicit connect to ``/``, a CONNECT answer without a
sid, an ERROR packet with a plain message) is ``wsk.sioserver``'s.
"""

from __future__ import annotations

import base64
import binascii

from engineio import packet as eio_packet

from wsk.transport.packets import BadPacket, decode

BINARY_TYPE = b"\x04"  # the message type byte that starts an Engine.IO 3 binary message


def decode_message(message: str | bytes) -> eio_packet.Packet:
    """One Engine.IO 3 packet from a websocket message or a part of a payload."""
    if isinstance(message, bytes):
        if message[:1] != BINARY_TYPE:
            raise BadPacket("a binary message that is not a message packet")
        return eio_packet.Packet(eio_packet.MESSAGE, message[1:])
    if message[:1] == "b":
        if message[1:2] != "4":
            raise BadPacket("a binary packet that is not a message")
        try:
            data = base64.b64decode(message[2:], validate=True)
        except binascii.Error:
            raise BadPacket("a binary packet that is not base64") from None
        return eio_packet.Packet(eio_packet.MESSAGE, data)
    return decode(message)


def encode_binary(data: bytes) -> bytes:
    """An Engine.IO 3 binary websocket message."""
    return BINARY_TYPE + data


def _units(text: str) -> int:
    """JavaScript's length of a string: its UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def encode_payload(packets: list[eio_packet.Packet]) -> str:
    """A long-polling response for an Engine.IO 3 client, in text."""
    parts = []
    for pkt in packets:
        text = "b4" + base64.b64encode(pkt.data).decode("ascii") if pkt.binary else pkt.encode()
        parts.append(f"{_units(text)}:{text}")
    return "".join(parts)


def count(body: bytes, content_type: str) -> int:
    """About how many packets a POST holds (an upper bound), without decoding any."""
    if content_type.startswith("application/octet-stream"):
        return body.count(b"\xff")
    return body.count(b":")


def decode_payload(body: bytes, content_type: str) -> list[eio_packet.Packet]:
    """The packets of an Engine.IO 3 POST body, text or binary; BadPacket if it is neither."""
    if content_type.startswith("application/octet-stream"):
        return _decode_binary(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPacket("not an Engine.IO payload") from None
    return _decode_text(text)


def _decode_text(text: str) -> list[eio_packet.Packet]:
    if not any(ord(c) > 0xFFFF for c in text if c > "\uffff"):
        return _decode_bmp(text)
    units = text.encode("utf-16-le")
    packets = []
    pos, end = 0, len(units) // 2
    while pos < end:
        colon = pos
        while colon < end and units[2 * colon : 2 * colon + 2] != b":\x00":
            colon += 1
        digits = units[2 * pos : 2 * colon].decode("utf-16-le")
        if colon == end or not digits.isdigit() or len(digits) > 10:
            raise BadPacket("not an Engine.IO payload")
        length = int(digits)
        start = colon + 1
        if start + length > end or not length:
            raise BadPacket("not an Engine.IO payload")
        packets.append(decode_message(units[2 * start : 2 * (start + length)].decode("utf-16-le")))
        pos = start + length
    if not packets:
        raise BadPacket("not an Engine.IO payload")
    return packets


def _decode_bmp(text: str) -> list[eio_packet.Packet]:
    """``_decode_text`` for a text whose characters are all one UTF-16 unit (the usual case)."""
    packets = []
    pos, end = 0, len(text)
    while pos < end:
        colon = text.find(":", pos, pos + 12)
        digits = text[pos:colon] if colon > 0 else ""
        if not digits.isdigit():
            raise BadPacket("not an Engine.IO payload")
        length = int(digits)
        start = colon + 1
        if start + length > end or not length:
            raise BadPacket("not an Engine.IO payload")
        packets.append(decode_message(text[start : start + length]))
        pos = start + length
    if not packets:
        raise BadPacket("not an Engine.IO payload")
    return packets


def _decode_binary(body: bytes) -> list[eio_packet.Packet]:
    packets = []
    pos, end = 0, len(body)
    while pos < end:
        kind = body[pos]
        stop = body.find(b"\xff", pos + 1, pos + 12)
        digits = body[pos + 1 : stop] if stop > 0 else b""
        if kind not in (0, 1) or not digits or any(d > 9 for d in digits):
            raise BadPacket("not an Engine.IO payload")
        length = int("".join(str(d) for d in digits))
        data = body[stop + 1 : stop + 1 + length]
        if len(data) != length:
            raise BadPacket("not an Engine.IO payload")
        if kind == 0:
            try:
                packets.append(decode_message(data.decode("utf-8")))
            except UnicodeDecodeError:
                raise BadPacket("not an Engine.IO payload") from None
        else:
            packets.append(decode_message(data))
        pos = stop + 1 + length
    if not packets:
        raise BadPacket("not an Engine.IO payload")
    return packets
