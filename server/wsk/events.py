"""The Socket.IO events a node answers, and the limits each client's events meet.

Every client event passes a token bucket first (``--client-event-rate`` per
second, ``--client-event-burst`` at once): past it, the event is answered
``{error}`` and not handled; a client that keeps on sending past it, until its
refused events outrun the rate by a whole burst, is disconnected. ``join`` also
meets ``--client-max-rooms``. Each refusal is counted (``wsk_events_refused_total``,
``wsk_clients_dropped_total``) and logged once per streak, not once per event.

With ``--auth`` a connect must bring a token (``wsk.auth``): one refused gets
Socket.IO's connect_error with a short reason (``unauthorized: token expired``),
one log line and one count in ``wsk_auth_refused_total{reason}``. ``join`` and
``publish`` then check the client's grant: a refusal is the ack
``{error: "forbidden: ..."}``, counted as ``wsk_events_refused_total{reason="forbidden"}``,
and the client stays connected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketio import exceptions as sio_exceptions

from wsk.auth import Authenticator, Grant, Unauthorized
from wsk.config import Config
from wsk.manager import NotDelivered, NotReplicated
from wsk.metrics import Metrics, event_label

if TYPE_CHECKING:
    from wsk.sioserver import SocketIOServer

log = logging.getLogger("wsk.events")

MAX_ROOM_LENGTH = 128
# characters of a client's test000 payload that make it into the log
LOG_PREVIEW = 200


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


def preview(value: Any, limit: int = LOG_PREVIEW) -> str:
    """``repr(value)``, cut to ``limit`` characters for the log."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class Bucket:
    """One client's token bucket, and its debt: the events refused lately."""

    __slots__ = ("debt", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.debt = 0.0


class EventLimit:
    """The events per second each client may send.

    A refused event adds one to the client's debt, which is paid back at the same
    rate as tokens come: a client that sends a little over its rate gets errors for
    the excess; one that floods runs up a debt past the burst and is dropped.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, Bucket] = {}

    def admit(self, sid: str) -> float:
        """0 to handle the event; else the client's debt, this refusal included."""
        if not self.rate:
            return 0
        now = time.monotonic()
        bucket = self.buckets.get(sid)
        if bucket is None:
            bucket = self.buckets[sid] = Bucket(self.burst, now)
        else:
            earned = (now - bucket.stamp) * self.rate
            bucket.tokens = min(self.burst, bucket.tokens + earned)
            bucket.debt = max(0.0, bucket.debt - earned)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        bucket.debt += 1
        return bucket.debt

    def forget(self, sid: str) -> None:
        self.buckets.pop(sid, None)


def register(
    sio: SocketIOServer, config: Config, metrics: Metrics, authenticator: Authenticator
) -> None:
    """Attach the node's event handlers to ``sio``."""
    node_name = config.node_name
    limit = EventLimit(config.client_event_rate, config.client_event_burst)
    # what each connected client may do, by sid
    grants: dict[str, Grant] = {}
    nothing = Grant(user=None, rooms=(), publish=())

    def forbidden(event: str, sid: str, what: str) -> dict[str, str]:
        metrics.events_refused.labels("forbidden").inc()
        grant = grants.get(sid, nothing)
        log.info("%s from %s (user %s) refused: %s", event, sid, grant.user, what)
        return {"error": f"forbidden: {what}"}

    def over_limit(event: str, sid: str) -> dict[str, str] | None:
        """The answer to an event past the client's rate, or None to handle it."""
        debt = limit.admit(sid)
        if not debt:
            return None
        metrics.events_refused.labels("rate").inc()
        if debt <= 1:
            log.info("client %s sends more than %g events/s; refusing its events", sid, limit.rate)
        elif debt - 1 <= limit.burst < debt:
            log.warning(
                "dropping client %s: it keeps sending over its rate of %g events/s", sid, limit.rate
            )
            metrics.clients_dropped.labels("rate").inc()
            sio.disconnect(sid)
        return {"error": f"rate limit: at most {limit.rate:g} events/s"}

    def handler(event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``fn`` for ``event``; limit and count it; turn BadRequest into an error ack."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            def counted(sid: str, *args: Any) -> Any:
                metrics.events_in.labels(event).inc()
                refusal = over_limit(event, sid)
                if refusal is not None:
                    return refusal
                try:
                    return fn(sid, *args)
                except BadRequest as exc:
                    log.info("%s from %s refused: %s", event, sid, exc)
                    return {"error": str(exc)}

            sio.on(event, counted)
            return fn

        return decorate

    @sio.on("connect")
    def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        metrics.events_in.labels("connect").inc()
        try:
            grant = authenticator.grant(auth)
        except Unauthorized as exc:
            metrics.auth_refused.labels(exc.reason).inc()
            log.info("client %s from %s refused: %s", sid, _peer(environ), exc.message)
            raise sio_exceptions.ConnectionRefusedError(exc.message) from None
        grants[sid] = grant
        metrics.connected_clients.inc()
        how = "recovered its session" if sid in sio.recovering else "connected"
        user = f" as user {grant.user!r}" if grant.user else ""
        log.info("client %s %s from %s%s", sid, how, _peer(environ), user)

    @sio.on("disconnect")
    def disconnect(sid: str, reason: Any = None) -> None:
        metrics.events_in.labels("disconnect").inc()
        metrics.connected_clients.dec()
        limit.forget(sid)
        grants.pop(sid, None)
        log.info("client %s disconnected (%s)", sid, reason)
        sio.session_ended(sid, reason)

    # the handlers below take what the client sent after their payload, and ignore it

    @handler("test000")
    def test000(sid: str, data: Any = None, *_: Any) -> None:
        log.info("test000 from %s: %s", sid, preview(data))

    @handler("whoami")
    def whoami(sid: str, *_: Any) -> dict[str, str | None]:
        return {"node": node_name, "sid": sid, "user": grants.get(sid, nothing).user}

    # An acknowledgement is a promise: join and leave answer once the client's session
    # remembers the room (when it may recover), publish once the message is in the
    # cluster's stream; what Redis could not take is answered {error}.

    @handler("join")
    def join(sid: str, data: Any = None, *_: Any) -> dict[str, str]:
        room = room_of(data, required=True)
        if not grants.get(sid, nothing).may_join(room):
            return forbidden("join", sid, f"may not join room {room!r}")
        rooms = sio.rooms(sid)
        # a client is always in the room of its own sid, which does not count
        if config.client_max_rooms and room not in rooms and len(rooms) > config.client_max_rooms:
            metrics.events_refused.labels("rooms").inc()
            log.info("join from %s refused: in %d rooms already", sid, len(rooms) - 1)
            return {"error": f"at most {config.client_max_rooms} rooms per client"}
        try:
            sio.enter_room(sid, room)
        except Exception as exc:  # the session could not remember it
            return _not_kept("join", sid, exc)
        return {"node": node_name, "room": room}

    @handler("leave")
    def leave(sid: str, data: Any = None, *_: Any) -> dict[str, str]:
        room = room_of(data, required=True)
        try:
            sio.leave_room(sid, room)
        except Exception as exc:
            return _not_kept("leave", sid, exc)
        return {"node": node_name, "room": room}

    @handler("publish")
    def publish(sid: str, data: Any = None, *_: Any) -> dict[str, str]:
        room = room_of(data, required=False)
        if "data" not in data:
            raise BadRequest("payload must have a data field")
        if not grants.get(sid, nothing).may_publish(room):
            what = "every client" if room is None else f"room {room!r}"
            return forbidden("publish", sid, f"may not publish to {what}")
        message = {"from": sid, "node": node_name, "room": room, "data": data["data"]}
        try:
            offset = sio.manager.emit("message", message, namespace="/", room=room)
        except NotReplicated:
            return {"error": "not acknowledged: too few of the cluster's Redis replicas had it"}
        except NotDelivered:
            return {"error": "not delivered: the cluster's Redis did not take it"}
        return {"node": node_name, "offset": str(offset)}

    def any_other(event: str, sid: str, *args: Any) -> Any:
        metrics.events_in.labels(event_label(event)).inc()
        refusal = over_limit(event, sid)
        if refusal is not None:
            return refusal
        log.debug("unhandled event %r from %s", event[:LOG_PREVIEW], sid)
        return None

    sio.on("*", any_other)


def _not_kept(event: str, sid: str, exc: Exception) -> dict[str, str]:
    log.warning("%s from %s failed: %s", event, sid, exc)
    return {"error": f"not done: the cluster's Redis did not take it ({type(exc).__name__})"}


def _peer(environ: dict[str, Any]) -> str:
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    remote = environ.get("REMOTE_ADDR", "?")
    return f"{forwarded} via {remote}" if forwarded else remote
