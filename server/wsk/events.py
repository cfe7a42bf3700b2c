"""The Socket.IO events a node answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import socketio

from wsk.metrics import Metrics, event_label

log = logging.getLogger("wsk.events")

MAX_ROOM_LENGTH = 128


class BadRequest(ValueError):
    """A client sent an event whose payload cannot be used."""


def room_of(payload: Any, required: bool) -> str | None:
    """The ``room`` of a payload, checked; None when it is optional and absent."""
    if not isinstance(payload, dict):
        raise BadRequest("payload must be an object")
    room = payload.get("room")
    if room is None and not required:
        return None
    if not isinstance(room, str) or not room or len(room) > MAX_ROOM_LENGTH:
        raise BadRequest(f"room must be a string of 1 to {MAX_ROOM_LENGTH} characters")
    return room


def register(sio: socketio.Server, node_name: str, metrics: Metrics) -> None:
    """Attach the node's event handlers to ``sio``."""

    def handler(event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``fn`` for ``event``; count it; turn BadRequest into an error ack."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            def counted(sid: str, *args: Any) -> Any:
                metrics.events_in.labels(event).inc()
                try:
                    return fn(sid, *args)
                except BadRequest as exc:
                    log.info("%s from %s refused: %s", event, sid, exc)
                    return {"error": str(exc)}

            sio.on(event, counted)
            return fn

        return decorate

    @handler("connect")
    def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        metrics.connected_clients.inc()
        log.info("client %s connected from %s", sid, _peer(environ))

    @handler("disconnect")
    def disconnect(sid: str, reason: Any = None) -> None:
        metrics.connected_clients.dec()
        log.info("client %s disconnected (%s)", sid, reason)

    @handler("test000")
    def test000(sid: str, data: Any = None) -> None:
        log.info("test000 from %s: %r", sid, data)

    @handler("whoami")
    def whoami(sid: str, data: Any = None) -> dict[str, str]:
        return {"node": node_name, "sid": sid}

    @handler("join")
    def join(sid: str, data: Any = None) -> dict[str, str]:
        room = room_of(data, required=True)
        sio.enter_room(sid, room)
        return {"node": node_name, "room": room}

    @handler("leave")
    def leave(sid: str, data: Any = None) -> dict[str, str]:
        room = room_of(data, required=True)
        sio.leave_room(sid, room)
        return {"node": node_name, "room": room}

    @handler("publish")
    def publish(sid: str, data: Any = None) -> dict[str, str]:
        room = room_of(data, required=False)
        if "data" not in data:
            raise BadRequest("payload must have a data field")
        message = {"from": sid, "node": node_name, "room": room, "data": data["data"]}
        sio.emit("message", message, to=room)
        return {"node": node_name}

    def any_other(event: str, sid: str, *args: Any) -> None:
        metrics.events_in.labels(event_label(event)).inc()
        log.debug("unhandled event %r from %s", event, sid)

    sio.on("*", any_other)


def _peer(environ: dict[str, Any]) -> str:
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    remote = environ.get("REMOTE_ADDR", "?")
    return f"{forwarded} via {remote}" if forwarded else remote
