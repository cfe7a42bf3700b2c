"""``wsk-client``: connect to a cluster, print what arrives, send test000 now and then."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import requests
import socketio

from wsk import options
from wsk.options import Option, OptionError

# wsk.client reaches python-socketio through wsk.transport.internals, which
# imports eventlet (not used here): its notice is for new projects
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
from wsk.client import Client as RecoveringClient  # noqa: E402

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "both": ["polling", "websocket"]}


def _ca_file(raw: str) -> str:
    """A PEM file of CA certificates that can be read."""
    path = raw.strip()
    try:
        with open(path, "rb") as pem:
            if b"-----BEGIN CERTIFICATE-----" not in pem.read():
                raise OptionError("the file holds no PEM certificate")
    except OSError as exc:
        raise OptionError(f"cannot read it ({exc.strerror})") from None
    return path


CLIENT_OPTIONS = (
    Option("path", options.url_path, "/wsk", "Socket.IO path on the server"),
    Option(
        "transport",
        options.choice(*TRANSPORTS),
        "websocket",
        "websocket, polling, or both (polling first, then upgrade)",
    ),
    Option("send_interval", options.seconds, 5.0, "seconds between two test000 (0: never)"),
    Option("room", options.text, None, "room to join after each connect"),
    Option(
        "max_disconnected",
        options.seconds,
        60.0,
        "exit 1 after this many seconds without a connection (0: never)",
    ),
    Option("duration", options.seconds, 0.0, "exit 0 after this many seconds (0: run until ^C)"),
    Option("token", options.text, None, "a JWT to connect with, sent as the auth {token}"),
    Option(
        "ca_file",
        _ca_file,
        None,
        "PEM file of the CA to trust for https:// (default: the system's CAs)",
    ),
)


# python-socketio runs each event handler and ack callback on a thread of its own
_output = threading.Lock()


def say(*parts: Any) -> None:
    """Print one timestamped line, whole, even when threads print at the same time."""
    stamp = datetime.now().isoformat(timespec="milliseconds")
    line = " ".join(map(str, (stamp, *parts))) + "\n"
    try:
        with _output:
            sys.stdout.write(line)
            sys.stdout.flush()
    except BrokenPipeError:
        # whoever read our output has gone (`wsk-client | head`): end quietly. Not by
        # restoring SIGPIPE's default, which would also kill the client when a write
        # to its own closing connection meets a reset.
        os._exit(0)


def _positionals(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        default="http://127.0.0.1:8080",
        help="the cluster's public URL, without the path (default: http://127.0.0.1:8080)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Connect, then print events until the time is up or the cluster stays away too long."""
    args = options.parse(
        "wsk-client",
        "Connect to a wsk cluster and print every event it sends.",
        CLIENT_OPTIONS,
        argv,
        os.environ,
        _positionals,
        env_prefix="WSK_CLIENT_",
    )
    client = Client(**args)
    return client.run()


class CaSession(requests.Session):
    """A requests session that trusts one CA file, whatever REQUESTS_CA_BUNDLE says.

    python-engineio sends its long-polling requests through the session and hands
    the session's ``verify`` to its websocket as ``ca_certs``. requests itself
    prefers REQUESTS_CA_BUNDLE to a session's ``verify`` unless each request
    names it, which this does.
    """

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(*args, **kwargs)


class Client:
    """A Socket.IO client that reconnects on its own and reports what it sees."""

    def __init__(
        self,
        url: str,
        path: str,
        transport: str,
        send_interval: float,
        room: str | None,
        max_disconnected: float,
        duration: float,
        ca_file: str | None = None,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.path = path
        self.transports = TRANSPORTS[transport]
        self.send_interval = send_interval
        self.room = room
        self.max_disconnected = max_disconnected
        self.duration = duration
        self.auth = {"token": token} if token else None
        self.disconnected_since = time.monotonic()
        self.connected = threading.Event()
        session = CaSession(ca_file) if ca_file else requests.Session()
        self.sio = RecoveringClient(
            reconnection=True, reconnection_delay_max=5, http_session=session
        )
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("connect_error", self.on_connect_error)
        self.sio.on("*", self.on_event)

    def on_connect(self) -> None:
        self.connected.set()
        how = "recovered" if self.sio.recovered else "connected"
        say(how, self.sio.get_sid(), "via", self.sio.transport())
        self.sio.emit("whoami", callback=lambda answer: say("whoami", _dump(answer)))
        if self.room:
            self.sio.emit("join", {"room": self.room}, callback=lambda a: say("join", _dump(a)))

    def on_connect_error(self, data: Any = None) -> None:
        message = data.get("message") if isinstance(data, dict) else data
        say("refused:", message)

    def on_disconnect(self, reason: Any = None) -> None:
        self.connected.clear()
        self.disconnected_since = time.monotonic()
        say("disconnected", reason)

    def on_event(self, event: str, *args: Any) -> None:
        say("event", event, *(_dump(arg) for arg in args))

    def run(self) -> int:
        """Run until ``duration`` passes (0) or the cluster stays unreachable (1)."""
        started = time.monotonic()
        connector = threading.Thread(target=self._connect, daemon=True)
        connector.start()
        next_send = started + self.send_interval
        try:
            while True:
                time.sleep(0.1)
                now = time.monotonic()
                if self.duration and now - started >= self.duration:
                    return 0
                if self.connected.is_set():
                    if self.send_interval and now >= next_send:
                        self._send_test000()
                        next_send = now + self.send_interval
                elif self._gave_up(now):
                    say(f"no connection for {self.max_disconnected:g} s; giving up")
                    return 1
        except KeyboardInterrupt:
            return 0
        finally:
            self.sio.shutdown()

    def _gave_up(self, now: float) -> bool:
        return bool(self.max_disconnected) and (
            now - self.disconnected_since >= self.max_disconnected
        )

    def _connect(self) -> None:
        say("connecting to", self.url + self.path, "with", "+".join(self.transports))
        try:
            self.sio.connect(
                self.url,
                socketio_path=self.path,
                transports=self.transports,
                auth=self.auth,
                retry=True,
                # the CONNECT answer may wait on Redis (recovery): not only the library's 1 s
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError as exc:
            say("cannot connect:", exc)

    def _send_test000(self) -> None:
        try:
            self.sio.emit("test000", {"text": "test000", "time": time.time()})
        except socketio.exceptions.BadNamespaceError:
            return  # disconnected in between; the next connect resumes


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


if __name__ == "__main__":
    sys.exit(main())
