"""The node's Engine.IO server: python-engineio's, made lean per client and never blocking.

- websockets are ``wsk.websocket`` transports, and broadcasts reach them
  through ``wsk.fanout``;
- a session's next ping is a hub timer rather than a greenlet asleep for the
  ping interval;
- disconnecting a session does not wait for its client.
"""

from __future__ import annotations

import time
from typing import Any

import engineio
import eventlet
from engineio import packet as eio_packet
from engineio.socket import Socket
from eventlet.hubs import get_hub
from prometheus_client import Counter

from wsk import fanout
from wsk.websocket import SessionQueue, WebSocketUpgrade


class EngineServer(engineio.Server):
    """python-engineio's Server with wsk's websocket transport and fan-out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._async = {**self._async, "websocket": WebSocketUpgrade}
        self.protocol_errors: Counter | None = None

    def count_protocol_error(self) -> None:
        """Count one input refused for not following the protocol."""
        if self.protocol_errors is not None:
            self.protocol_errors.inc()

    def create_queue(self, *args: Any, **kwargs: Any) -> SessionQueue:
        """A session's packet queue, which wakes its websocket's writer (python-engineio's API)."""
        return SessionQueue(*args, **kwargs)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        # python-engineio pings each client from a greenlet of its own that sleeps
        # through the ping interval first; a timer does the same for a few bytes
        if getattr(target, "__func__", None) is Socket._send_ping and not args and not kwargs:
            sock = target.__self__
            get_hub().schedule_call_global(self.ping_interval, eventlet.spawn_n, _ping, sock)
            return None
        return super().start_background_task(target, *args, **kwargs)

    def send_packet(self, sid: str, pkt: Any) -> None:
        """Send a packet to a client: straight onto its websocket when it can (wsk.fanout)."""
        if not fanout.send_packet(self, sid, pkt):
            super().send_packet(sid, pkt)

    def disconnect(self, sid: str | None = None) -> None:
        """Close one session, or all of them, without waiting for their clients."""
        sids = [sid] if sid is not None else list(self.sockets)
        for one in sids:
            sock = self.sockets.pop(one, None)
            if sock is not None:
                sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)


def _ping(sock: Socket) -> None:
    """What python-engineio's ``Socket._send_ping`` does once its sleep is over."""
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.send(eio_packet.Packet(eio_packet.PING))


def session_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """The part of a request's environ a session keeps: its strings (CGI variables, headers).

    python-socketio keeps the environ of a session's first request for the whole
    session; the request's file objects would keep its connection's buffers.
    """
    return {key: value for key, value in environ.items() if isinstance(value, str)}
