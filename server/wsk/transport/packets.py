"""Engine.IO packets in, as the websocket and long-polling transports receive them.

python-engineio's own decoder runs ``json.loads`` on the data of every text
packet, although a Socket.IO message (``42[...]``) is never JSON at that level:
work for nothing, and a ``RecursionError`` for deeply nested input. Here the
data of a text packet stays the string it is; python-socketio decodes it.
"""

from __future__ import annotations

import base64
import binascii

from engineio import packet as eio_packet

SEPARATOR = "\x1e"  # between the packets of a long-polling payload (Engine.IO v4)
TYPES = len(eio_packet.packet_names)


class BadPacket(ValueError):
    """Input that is not an Engine.IO packet."""


def decode(message: str | bytes) -> eio_packet.Packet:
    """One Engine.IO packet from a websocket message or a part of a polling payload."""
    if isinstance(message, bytes):
        return eio_packet.Packet(eio_packet.MESSAGE, message)
    if not message:
        raise BadPacket("an empty packet")
    kind = message[0]
    if kind == "b":
        try:
            data = base64.b64decode(message[1:], validate=True)
        except binascii.Error:
            raise BadPacket("a binary packet that is not base64") from None
        return eio_packet.Packet(eio_packet.MESSAGE, data)
    if not "0" <= kind <= "9":
        raise BadPacket("not an Engine.IO packet")
    if int(kind) >= TYPES:
        raise BadPacket(f"unknown packet type {kind}")
    return eio_packet.Packet(int(kind), message[1:])


def count(payload: str) -> int:
    """How many packets a long-polling payload holds, without decoding any."""
    return payload.count(SEPARATOR) + 1


def split(payload: str) -> list[str]:
    """The packets of a long-polling payload, still encoded."""
    return payload.split(SEPARATOR)
