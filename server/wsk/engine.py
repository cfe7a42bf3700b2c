"""The node's Engine.IO server: python-engineio's, made lean per client and never blocking.

- websockets are ``wsk.websocket`` transports, and broadcasts reach them
  through ``wsk.fanout``;
- a session's next ping is a hub timer rather than a greenlet asleep for the
  ping interval;
- a long-polling response carries at most 16 packets, which python-engineio's
  own client needs, and a long-polling request may carry more, which Node's
  client sends;
- clients that stopped answering pings are found by a sweep a few times per
  ping timeout, not by a wake-up per session;
- disconnecting a session does not wait for its client.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import engineio
import eventlet
import eventlet.queue
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.socket import Socket
from eventlet.hubs import get_hub
from prometheus_client import Counter

from wsk import fanout
from wsk.websocket import SessionQueue, WebSocketUpgrade

# python-engineio's client refuses a payload of more packets than this
# (engineio.payload.Payload.max_decode_packets, whose default it is)
MAX_PACKETS_PER_POLL = 16


class Session(Socket):
    """python-engineio's session (its ``Socket``), as wsk serves it."""

    def schedule_ping(self) -> None:
        # python-engineio pings from a greenlet of its own that sleeps through the
        # ping interval first; a timer does the same for a few bytes
        if self.last_ping:
            self.last_ping = None
            get_hub().schedule_call_global(
                self.server.ping_interval, eventlet.spawn_n, self._ping_now
            )

    def _ping_now(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def poll(self) -> list[eio_packet.Packet]:
        """Wait for packets for a long-polling client, and take at most MAX_PACKETS_PER_POLL."""
        queue = self.queue
        try:
            first = queue.get(timeout=self.server.ping_interval + self.server.ping_timeout)
        except eventlet.queue.Empty:
            raise eio_exceptions.QueueEmpty() from None
        queue.task_done()
        if first is None:
            return []
        packets = [first]
        while len(packets) < MAX_PACKETS_PER_POLL and queue.qsize():
            pkt = queue.get(block=False)
            queue.task_done()
            if pkt is None:
                queue.put(None)  # the next poll finds the session closed
                break
            packets.append(pkt)
        return packets


class EngineServer(engineio.Server):
    """python-engineio's Server with wsk's sessions, websocket transport and fan-out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._async = {**self._async, "websocket": WebSocketUpgrade}
        self.protocol_errors: Counter | None = None
        # python-engineio logs every packet at info level; asked once here, not once
        # per recipient of every broadcast (wsk.fanout)
        self.log_packets = self.logger.isEnabledFor(logging.INFO)
        # a client sends everything it has buffered in one long-polling POST (Node's
        # does); what bounds a POST is its size (max_http_buffer_size, wsk.guard),
        # not its number of packets. The limit is python-engineio's, process-wide.
        eio_payload.Payload.max_decode_packets = max(
            eio_payload.Payload.max_decode_packets, int(self.max_http_buffer_size)
        )

    def count_protocol_error(self) -> None:
        """Count one input refused for not following the protocol."""
        if self.protocol_errors is not None:
            self.protocol_errors.inc()

    def create_queue(self, *args: Any, **kwargs: Any) -> SessionQueue:
        """A session's packet queue, which wakes its websocket's writer (python-engineio's API)."""
        return SessionQueue(*args, **kwargs)

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            # python-engineio has just made the session, as its own Socket class, and
            # nothing has used it yet: from now on it is a wsk Session
            sock = self.sockets.get(args[0])
            if type(sock) is Socket:
                sock.__class__ = Session
        return super()._trigger_event(event, *args, **kwargs)

    def _service_task(self) -> None:
        """Close the sessions of clients that stopped answering pings; forget closed sessions.

        python-engineio's own wakes once per session per ping timeout (250 times a
        second for 5,000 sessions and a 20 s timeout, a third of an idle node's CPU);
        this one goes through all of them four times per ping timeout.
        """
        self.service_task_event = self.create_event()
        interval = max(0.25, self.ping_timeout / 4)
        while not self.service_task_event.wait(timeout=interval):
            for count, (sid, sock) in enumerate(list(self.sockets.items()), 1):
                if sock.closed:
                    if self.sockets.get(sid) is sock:
                        del self.sockets[sid]
                elif not sock.closing:
                    sock.check_ping_timeout()
                if count % 1000 == 0:
                    eventlet.sleep(0)  # let the others run during a long sweep

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


def session_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """The part of a request's environ a session keeps: its strings (CGI variables, headers).

    python-socketio keeps the environ of a session's first request for the whole
    session; the request's file objects would keep its connection's buffers.
    """
    return {key: value for key, value in environ.items() if isinstance(value, str)}
