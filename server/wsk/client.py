"""A python-socketio client that recovers its connection state, as socket.io-client 4.6+ does.

A wsk cluster with ``--recovery-window`` gives each client a private session id
(``pid``) and sends every broadcast event with its stream offset as its last
argument. socket.io-client keeps both and, when it reconnects, asks for its
session back with ``{pid, offset}``; the cluster then restores its sid, rooms
and session data and replays what it missed. python-socketio's client knows
nothing of this: it ignores the pid, hands the offset to the event handler as
one more argument, and reconnects as a new client, so that what was sent while
it was away is lost to it. It also handles each received message on a thread
of its own, in no particular order, which makes "the last offset" meaningless.

``Client`` is python-socketio's client with what is missing:

- each message is handled on the read loop that received it, in order;
- the pid of the CONNECT answer is kept, and the highest offset seen;
- event handlers see the event without its offset (``offset`` has it);
- a reconnect asks for the session with ``{pid, offset}`` beside the
  application's own ``auth``, and ``recovered`` says whether it came back.

Handlers run on the read loop, so a handler must not wait for the server
(``call()`` from inside a handler would wait for an answer the same loop reads).
"""

from __future__ import annotations

import re
from typing import Any

from wsk.transport.internals import SocketIOClientHooks

OFFSET = re.compile(r"^\d{1,20}-\d{1,20}$")


def _offset_key(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


class Client(SocketIOClientHooks):
    """python-socketio's ``Client``, with connection-state recovery and ordered events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False
        self._user_auth: Any = None
        # how long a connect waits for the CONNECT answer, reconnects included
        self.wait_timeout: float = 1

    def connect(
        self,
        url: str,
        *args: Any,
        auth: Any = None,
        wait_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """python-socketio's ``connect``; ``auth`` (a dict or a callable) and ``wait_timeout``
        hold for every reconnect too.

        python-socketio's reconnect waits 1 s for the CONNECT answer, whatever the first
        connect was given. A recovering CONNECT that waits on Redis can take longer; the
        attempt was then given up and made again, and over long-polling the late answer
        still fired ``connect``: two connects for one lost connection.
        """
        if auth != self._auth:  # python-socketio reconnects with what it was given: ours
            self._user_auth = auth
        if wait_timeout is not None:  # python-socketio reconnects without one
            self.wait_timeout = wait_timeout
        super().connect(url, *args, auth=self._auth, wait_timeout=self.wait_timeout, **kwargs)

    def _auth(self) -> dict[str, Any] | None:
        base = self._user_auth() if callable(self._user_auth) else self._user_auth
        if self.pid is None:
            return base
        recovery: dict[str, Any] = {"pid": self.pid}
        if self.offset is not None:
            recovery["offset"] = self.offset
        return {**(base or {}), **recovery}

    def namespace_connected(self, namespace: str, answer: dict[str, Any]) -> None:
        if namespace != "/":
            return
        pid = answer.get("pid")
        self.recovered = bool(pid) and pid == self.pid
        if not self.recovered:
            self.offset = None  # a new session: nothing seen in it yet
        self.pid = pid if isinstance(pid, str) else None

    def event_received(self, namespace: str, data: list[Any]) -> list[Any]:
        if namespace != "/" or self.pid is None or len(data) < 2:
            return data
        last = data[-1]
        if not isinstance(last, str) or not OFFSET.match(last):
            return data
        if self.offset is None or _offset_key(last) > _offset_key(self.offset):
            self.offset = last
        return data[:-1]
