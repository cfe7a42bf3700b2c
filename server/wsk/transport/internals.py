"""The one door into the private parts of python-engineio, python-socketio and eventlet.

wsk serves Engine.IO with a transport of its own (no greenlet per idle client,
broadcasts framed once, bounded input), built into three libraries whose public
API has no hook for it. Every private name, and every undocumented attribute
whose meaning wsk relies on, is used here and nowhere else. What the rest of
wsk sees are the named hooks of ``EngineIOHooks`` and ``SocketIOHooks`` and the
functions below.

At import, the installed versions of the three libraries are checked against
the range wsk's test suite has run (``wsk.transport.versions.TESTED``, the same
bounds as pyproject.toml's). Outside it, the import fails with one line saying what is
installed and what is needed: an upgrade then fails at start, loudly, instead
of at the first client that takes a changed path.

What is used, and why:

python-engineio (``engineio``)
    ``Server._async["websocket"]``
        the factory of websocket transports: wsk's (``wsk.transport.websocket``).
    ``Server._trigger_event("connect", sid, ...)``
        the moment a session exists. python-engineio creates every session as its
        own ``engineio.socket.Socket``, with no factory to ask; its class is
        switched there to wsk's ``Session`` (a subclass that adds no state of its
        own beyond class-level defaults), before anything else uses it.
    ``Server._service_task``, ``start_service_task``, ``service_task_handle``
        the client monitor. python-engineio's wakes once per session per ping
        timeout; wsk's sweeps all sessions a few times per timeout. An Engine.IO 3
        handshake (wsk's own) starts it as python-engineio's starts it.
    ``Server._trigger_event("connect")`` from an Engine.IO 3 handshake
        which python-engineio 4 refuses: wsk makes those sessions itself and tells
        the application as python-engineio would.
    ``Server._cors_headers`` / ``Server._cors_allowed_origins``
        to answer a refused long-polling request with the same CORS headers as
        python-engineio's answers, so that a browser can read the error.
    the websocket factory's ``handler.__self__``
        python-engineio hands the factory the session's bound
        ``_websocket_handler``; its ``__self__`` is the session.
    ``Socket`` attributes ``queue``, ``connected``, ``upgrading``, ``upgraded``,
    ``closing``, ``closed``, ``last_ping``
        the session's state, read and set by the transport as python-engineio's
        own transport does.

python-socketio (``socketio``)
    ``Server._engineio_server_class``
        to run on wsk's Engine.IO server.
    ``Server._handle_eio_connect``
        to keep a session's environ without the request's files.
    ``Server._handle_eio_message`` and ``Server._binary_packet``
        to refuse a packet that does not parse (with one log line, not the
        traceback python-socketio lets escape), and to bound binary attachments
        before python-socketio keeps them.
    ``Server._handle_event``
        to refuse events that are not ``[name, ...]`` with a string name, or whose
        name is one that only the server may raise (``connect``, ``disconnect``).
    ``Server._handle_connect``, ``Server._trigger_event``, ``Server._send_packet``
        a namespace's connect is wsk's own (connection-state recovery: a client
        may come back with its session's private id and get its sid, rooms and
        what it missed); it calls the application's connect handler and sends
        the CONNECT answer as python-socketio does.

python-socketio's and python-engineio's clients (``wsk.client``)
    ``engineio.Client._trigger_event("message", run_async=True)``
        python-engineio's client starts a thread for every message it receives:
        events then reach the application in any order, and a burst costs a
        thread each. wsk's client handles each message on its read loop.
    ``engineio.Client.ws``, set when a websocket opens, before its threads start
        the websocket-client ``WebSocket``, whose TLS socket (``WebSocket.sock``)
        wsk's client replaces with one that its read and write threads may share
        (``wsk.clienttls``: python-engineio's two threads otherwise call OpenSSL
        at once, and healthy ``wss://`` connections drop).
    ``socketio.Client._engineio_client_class``
        to run on that Engine.IO client.
    ``socketio.Client._handle_connect``, ``socketio.Client._handle_event``
        to read the ``pid`` of a CONNECT answer, and to take the offset off each
        event (connection-state recovery), which python-socketio knows nothing of.

eventlet
    ``eventlet.wsgi.WSGI_LOCAL.already_handled``
        tells eventlet's request handler that the response (a websocket's 101)
        went out another way.
    ``eventlet.wsgi.STATE_IDLE`` / ``STATE_CLOSE`` and ``HttpProtocol.conn_state``
        the connection states of eventlet's server, which wsk's accept loop keeps
        as eventlet's own does.
    ``FdListener.greenlet``
        the greenlet eventlet signals when a watched socket is closed under it; a
        websocket transport has none of its own, and the hub stands in.
    ``GreenSocket.fd``, and ``GreenSocket.close`` as ``__del__`` calls it
        a websocket keeps only the OS socket under eventlet's green one (whose
        cached methods cost about 1 KiB a client); the green one, once collected,
        would close the OS socket with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import engineio
import eventlet.wsgi
import socketio
from engineio.socket import Socket
from eventlet.hubs import get_hub

from wsk import clienttls
from wsk.transport.versions import UnsupportedVersion, check_versions

__all__ = ["UnsupportedVersion"]

check_versions()

STATE_IDLE = eventlet.wsgi.STATE_IDLE
STATE_CLOSE = eventlet.wsgi.STATE_CLOSE


class EngineIOHooks(engineio.Server):
    """python-engineio's Server, with the private hooks wsk needs turned into named ones.

    A subclass sets ``session_class`` and ``websocket_factory`` and implements
    ``monitor_sessions``.
    """

    session_class: type[Socket] = Socket
    websocket_factory: Callable[..., Any] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.websocket_factory is not None:
            self._async = {**self._async, "websocket": self.websocket_factory}

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            sock = self.sockets.get(args[0])
            if type(sock) is Socket:
                sock.__class__ = self.session_class
        return super()._trigger_event(event, *args, **kwargs)

    def _service_task(self) -> None:
        self.monitor_sessions()

    def start_monitor(self) -> None:
        """Start the client monitor if no session started it yet (python-engineio's way)."""
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)

    def session_made(self, sid: str, environ: dict[str, Any]) -> Any:
        """Tell the application a session exists (python-engineio's connect event)."""
        return self._trigger_event("connect", sid, environ, run_async=False)

    def monitor_sessions(self) -> None:
        """Watch the sessions for clients that stopped answering pings, until shut down."""
        super()._service_task()

    def cors_headers(self, environ: dict[str, Any]) -> list[tuple[str, str]]:
        """The CORS headers python-engineio would add to its answer to this request."""
        return list(self._cors_headers(environ))

    def origin_allowed(self, environ: dict[str, Any]) -> bool:
        """Whether the request's Origin, if any, is one the server accepts."""
        origin = environ.get("HTTP_ORIGIN")
        if not origin or self.cors_allowed_origins == []:
            return True
        allowed = self._cors_allowed_origins(environ)
        return allowed is None or origin in allowed


def session_of(websocket_handler: Callable[[Any], Any]) -> Socket:
    """The session whose bound websocket handler python-engineio gave the factory."""
    return websocket_handler.__self__  # type: ignore[attr-defined]


class SocketIOHooks(socketio.Server):
    """python-socketio's Server, with the private hooks wsk needs turned into named ones.

    A subclass sets ``engineio_server_class`` and may implement ``check_message``
    (called with each Engine.IO message before python-socketio decodes it) and
    ``check_event`` (called with each event's data before it is dispatched).
    """

    engineio_server_class: type[engineio.Server] = engineio.Server

    def _engineio_server_class(self) -> type[engineio.Server]:
        return self.engineio_server_class

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        result = super()._handle_eio_connect(eio_sid, self.session_environ(environ))
        self.engineio_connected(eio_sid)
        return result

    def engineio_connected(self, eio_sid: str) -> None:
        """An Engine.IO session exists (its handshake is being answered)."""

    def session_environ(self, environ: dict[str, Any]) -> dict[str, Any]:
        """What of a request's environ the session keeps (all of it, unless overridden)."""
        return environ

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            self.check_message(eio_sid, data, self._binary_packet.get(eio_sid))
            super()._handle_eio_message(eio_sid, data)
        except MALFORMED as exc:
            self._binary_packet.pop(eio_sid, None)
            self.refuse_message(eio_sid, exc)

    def check_message(self, eio_sid: str, data: str | bytes, pending: Any) -> None:
        """Raise ValueError to refuse a message; ``pending`` is the binary packet it completes."""

    def refuse_message(self, eio_sid: str, error: Exception) -> None:
        """A message was refused, or did not parse (``error`` says why)."""

    def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        self.check_event(data)
        super()._handle_event(eio_sid, namespace, id, data)

    def check_event(self, data: Any) -> None:
        """Raise ValueError to refuse an event's data (``[name, *args]``)."""

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        self.connect_namespace(eio_sid, namespace or "/", data)

    def connect_namespace(self, eio_sid: str, namespace: str, auth: Any) -> None:
        """A client asks to connect to a namespace (python-socketio's own handling)."""
        super()._handle_connect(eio_sid, namespace, auth)

    def call_connect_handler(self, namespace: str, sid: str, environ: Any, auth: Any) -> Any:
        """Run the application's connect handler as python-socketio would."""
        return self._trigger_event("connect", namespace, sid, environ, auth)

    def send_socketio_packet(self, eio_sid: str, pkt: Any) -> None:
        """Send one Socket.IO packet to a client's Engine.IO session."""
        self._send_packet(eio_sid, pkt)


# what python-socketio raises, or lets escape, for a packet that does not parse: bad
# JSON (ValueError), JSON too deep (RecursionError), wrong shapes (TypeError,
# KeyError, IndexError, AttributeError: a binary placeholder that points nowhere)
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


class EngineIOClientHooks(engineio.Client):
    """python-engineio's client, handling each message on the loop that read it, in order,
    over a TLS websocket that its two threads may share."""

    @property
    def ws(self) -> Any:
        return self.__dict__.get("_websocket")

    @ws.setter
    def ws(self, ws: Any) -> None:
        self.__dict__["_websocket"] = clienttls.serialize(ws) if ws is not None else None

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class SocketIOClientHooks(socketio.Client):
    """python-socketio's client over ``EngineIOClientHooks``, with two named hooks.

    ``namespace_connected(namespace, answer)`` sees each CONNECT answer before
    the connect handler runs; ``event_received(namespace, data)`` may change an
    event's ``[name, *args]`` before its handler sees it.
    """

    def _engineio_client_class(self) -> type[engineio.Client]:
        return EngineIOClientHooks

    def _handle_connect(self, namespace: str | None, data: Any) -> None:
        self.namespace_connected(namespace or "/", data if isinstance(data, dict) else {})
        super()._handle_connect(namespace, data)

    def namespace_connected(self, namespace: str, answer: dict[str, Any]) -> None:
        """A namespace's CONNECT answer arrived."""

    def _handle_event(self, namespace: str | None, id: int | None, data: Any) -> None:
        super()._handle_event(namespace, id, self.event_received(namespace or "/", data))

    def event_received(self, namespace: str, data: list[Any]) -> list[Any]:
        """An event's data, as its handler will see it."""
        return data


def response_sent_elsewhere() -> None:
    """Tell eventlet's request handler that this request's response went out another way."""
    eventlet.wsgi.WSGI_LOCAL.already_handled = True


def unwrap(sock: Any) -> Any:
    """The OS socket under an eventlet GreenSocket, which may now be let go without closing it."""
    raw = sock.fd
    sock.close = _keep_open  # what GreenSocket.__del__ calls
    return raw


def _keep_open() -> None:
    pass


def hand_listener_to_hub(listener: Any) -> None:
    """Let the hub stand in for the greenlet eventlet would signal if the socket closed."""
    listener.greenlet = get_hub().greenlet
