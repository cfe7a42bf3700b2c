"""A python-socketio client that records what it receives, for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from processes import wait_until
from wsk.client import Client

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "both": ["polling", "websocket"]}


class RecordingClient:
    """Connects, records every event with its arguments, and answers waits on them.

    Its client is wsk's (``wsk.client.Client``): python-socketio's, handling each
    message on its read loop in order, and recovering its session. With
    python-socketio's own, every received message starts a thread; 27 clients in
    one process that got 400 broadcasts each (10,800 threads in a few seconds)
    fell more than the tests' 3 s ping timeout behind, the nodes dropped them, and
    what was broadcast while they reconnected was missed (issue 14).
    """

    def __init__(self, reconnection: bool = True) -> None:
        self.sio = Client(
            reconnection=reconnection,
            reconnection_delay=0.2,
            reconnection_delay_max=1,
            randomization_factor=0,
            handle_sigint=False,
        )
        self.events: list[tuple[str, Any]] = []
        # the threads that ran the event handler, for the test of InOrderClient
        self.handler_threads: set[str] = set()
        self.connects = 0
        self.disconnects: list[Any] = []
        self.lock = threading.Lock()
        self.sio.on("*", self._record)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    def _record(self, event: str, *args: Any) -> None:
        with self.lock:
            self.handler_threads.add(threading.current_thread().name)
            self.events.append((event, args[0] if len(args) == 1 else args))

    def _on_connect(self) -> None:
        with self.lock:
            self.connects += 1

    def _on_disconnect(self, reason: Any = None) -> None:
        with self.lock:
            self.disconnects.append(reason)

    def connect(
        self,
        url: str,
        path: str = "/wsk",
        transport: str = "websocket",
        wait_timeout: float = 5,
        auth: Any = None,
    ) -> RecordingClient:
        self.sio.connect(
            url,
            socketio_path=path,
            transports=TRANSPORTS[transport],
            wait_timeout=wait_timeout,
            auth=auth,
        )
        return self

    def call(self, event: str, data: Any = None, timeout: float = 5) -> Any:
        return self.sio.call(event, data, timeout=timeout)

    def node(self) -> str:
        return self.call("whoami")["node"]

    def received(self, event: str) -> list[Any]:
        with self.lock:
            return [data for name, data in self.events if name == event]

    def wait_for(self, event: str, predicate=lambda data: True, timeout: float = 10) -> Any:
        def found():
            return next((d for d in self.received(event) if predicate(d)), None)

        return wait_until(found, timeout, what=f"event {event!r}")

    def close(self) -> None:
        self.sio.shutdown()
        deadline = time.monotonic() + 5
        while self.sio.connected and time.monotonic() < deadline:
            time.sleep(0.05)


NODE_DIR = Path(__file__).parent / "node"


class NodeClient:
    """Runs tests/node/client.js (socket.io-client) and collects the JSON lines it prints."""

    def __init__(
        self,
        url: str,
        transports: str,
        seconds: float = 30,
        room: str | None = None,
        path: str = "/wsk",
        token: str | None = None,
    ) -> None:
        argv = ["node", str(NODE_DIR / "client.js"), url, path, transports, str(seconds)]
        # the connect's auth: {token} (client.js reads it from the environment)
        env = {k: v for k, v in os.environ.items() if k != "WSK_TEST_TOKEN"}
        if token is not None:
            env["WSK_TEST_TOKEN"] = token
        self.proc = subprocess.Popen(
            [*argv, *([room] if room else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.transports = transports
        self.lines: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def send(self, event: str, data: Any = None) -> None:
        self.proc.stdin.write(json.dumps({"event": event, "data": data}) + "\n")
        self.proc.stdin.flush()

    def break_transport(self, reconnect_after: float = 0.2) -> None:
        """Close the client's transport under it, as a lost connection would."""
        self.send("__break__", {"delay": int(reconnect_after * 1000)})

    def nodes(self) -> list[str]:
        return [line["data"]["node"] for line in self.lines if line["what"] == "whoami"]

    def connects(self) -> list[dict]:
        return [line["data"] for line in list(self.lines) if line["what"] == "connect"]

    def connected(self) -> bool:
        """Whether its last connect is later than its last disconnect."""
        last = {line["what"]: i for i, line in enumerate(list(self.lines))}
        return last.get("connect", -1) > last.get("disconnect", -1)

    def events(self, name: str) -> list:
        return [
            line["data"]["args"][0]
            for line in list(self.lines)
            if line["what"] == "event" and line["data"]["event"] == name
        ]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
