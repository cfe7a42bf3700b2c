"""Long-polling POSTs, checked before anything in them is decoded.

python-engineio reads and decodes a POST's body before it knows whether its
packets can be taken; a body that is too large or not Engine.IO makes it close
the session and wait, without end, for a poll that will not come, and anything
else that goes wrong is answered 200 as if it had been delivered.

Here, in this order, each step cheaper than the next:

1. a POST for a session that does not exist, is not connected or has upgraded
   is left to python-engineio, which refuses it without reading the body;
2. a chunked body is refused (411): Engine.IO clients send a Content-Length;
3. a body over ``--max-payload`` bytes is refused (413) before it is read;
4. the body is read within what is left of the request's deadline
   (``--request-timeout``, kept by ``wsk.transport.http``);
5. its packets are counted, and a body of more than ``--max-post-packets`` is
   refused (413) before one is decoded;
6. they are decoded (``wsk.transport.packets``), and handed to the session by
   ``Session.handle_post_request`` in slices that let the hub run others.

A refused POST ends its session (its packets are lost), gets a 4xx with a JSON
``{"error": ...}`` body, one log line and one count.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import eventlet

from wsk.transport import packets
from wsk.transport.http import CLOSE_KEY, DEADLINE_KEY

if TYPE_CHECKING:
    from wsk.transport.engine import EngineServer

# where the checked packets wait for Session.handle_post_request
PACKETS_KEY = "wsk.packets"


def check_post(server: EngineServer, sid: str, environ: dict[str, Any]) -> tuple[str, str] | None:
    """Read and decode a long-polling POST; its refusal (status, reason), or None to go on."""
    session = server.sockets.get(sid)
    if session is None or not session.connected or session.upgraded or session.closed:
        return None
    problem = _read(server, environ)
    if problem is None:
        return None
    close = environ.get(CLOSE_KEY)
    if close is not None:
        close()  # what is left of the body is not read
    server.refused("post", sid, problem[1])
    session.close(wait=False, abort=False, reason=server.reason.SERVER_DISCONNECT)
    return problem


def _read(server: EngineServer, environ: dict[str, Any]) -> tuple[str, str] | None:
    config = server.config
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return "411 Length Required", "a long-polling POST needs a Content-Length"
    length = int(environ.get("CONTENT_LENGTH") or 0)  # eventlet refused one that is not a number
    if length > config.max_payload:
        return "413 Content Too Large", f"payload over {config.max_payload} bytes"
    deadline = environ.get(DEADLINE_KEY)
    try:
        body = environ["wsgi.input"].read(length)
    except eventlet.Timeout as exc:
        if deadline is None or not deadline.passed(exc):
            raise
        return "408 Request Timeout", f"the body did not arrive within {deadline.seconds:g} s"
    if deadline is not None:
        deadline.met()  # the request is in: its deadline no longer applies
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "400 Bad Request", "not an Engine.IO payload"
    if packets.count(text) > config.max_post_packets:
        return "413 Content Too Large", f"more than {config.max_post_packets} packets"
    try:
        environ[PACKETS_KEY] = [packets.decode(part) for part in packets.split(text)]
    except packets.BadPacket as exc:
        if str(exc).startswith("unknown packet type"):
            return "400 Bad Request", str(exc)
        return "400 Bad Request", "not an Engine.IO payload"
    return None


def error_body(reason: str) -> bytes:
    """The JSON body of a refusal."""
    return json.dumps({"error": reason}).encode()
