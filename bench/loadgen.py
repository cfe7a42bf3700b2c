"""The load generator: one process of lean Socket.IO clients, driven over stdin.

It speaks Engine.IO v4 / Socket.IO v5 itself, over raw TCP: websocket (RFC 6455
client frames, masked) for most clients, and HTTP/1.1 long-polling followed by
the websocket upgrade for the connect-rate workload. Nothing in it depends on
which server it talks to, so the same code loads wsk and the Node reference.

The coordinator (``bench.workers``) starts several of these processes and sends
each one JSON command per line on stdin; each command gets one JSON line back on
stdout, with the process' CPU time so far, so that the coordinator can show
that the generator was not the bottleneck.

Messages carry their step, send time and number (``~<step>~<monotonic ns>~<seq>~``)
at the start of their ``data``: CLOCK_MONOTONIC is one clock for every process of
the machine, so a receiver in another process computes the latency directly.

For the recovery workload, ``Member`` is a client that lives through several
connections as socket.io-client 4.6+ does with connection-state recovery: it keeps
the ``pid`` of the CONNECT answer and the offset that ends every room event, and
reconnects by itself with ``{pid, offset}`` as its CONNECT auth; the answer is a
recovery when it carries the same ``pid`` (socket.io-client's ``recovered``). Each
member counts every message number it gets, so that lost, duplicated and
out-of-order messages can be told apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import random
import resource
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import uvloop

from bench import hist

CONNECT_TIMEOUT = 10.0
# what a recovering client waits for its CONNECT answer: socket.io-client's own default
# (the Manager's ``timeout``), so that a node replaying to many clients at once is given
# the time a real client gives it
RECOVERY_CONNECT_TIMEOUT = 20.0
HANDSHAKE_TIMEOUT = 5.0
MESSAGE_PREFIX = b'42["message"'
MAX_FRAME = 16 * 1024 * 1024

Json = dict[str, Any]


class ProtocolError(Exception):
    """The server said something this client does not expect."""


def ws_frame(payload: bytes) -> bytes:
    """A masked, final text frame carrying ``payload``, as a client must send it."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0xFF)) + size.to_bytes(8, "big")
    mask = random.randbytes(4)
    keystream = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ keystream).to_bytes(size, "big")
    return head + mask + masked


def ws_control(opcode: int, payload: bytes = b"") -> bytes:
    """A masked control frame (close, pong); ``payload`` is at most 125 bytes."""
    mask = random.randbytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def upgrade_request(host: str, path: str, query: str, cookie: str | None) -> bytes:
    """The HTTP request that opens an Engine.IO websocket."""
    key = base64.b64encode(random.randbytes(16)).decode()
    lines = [
        f"GET {path}?{query} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Stats:
    """What this process' clients received, by step of the workload."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[list[int], list[int]]] = {}
        self.other_events = 0
        self.disconnects = 0

    def message(self, packet: bytes) -> None:
        """Record one ``message`` event: its step and its latency."""
        now = time.monotonic_ns()
        start = packet.find(b"~", len(MESSAGE_PREFIX))
        if start < 0:
            self.other_events += 1
            return
        fields = packet[start + 1 : start + 48].split(b"~", 2)
        step = int(fields[0])
        latency = now - int(fields[1])
        entry = self.steps.get(step)
        if entry is None:
            entry = self.steps[step] = ([0], hist.new())
        entry[0][0] += 1
        entry[1][hist.bucket(latency)] += 1

    def report(self, step: int) -> Json:
        entry = self.steps.get(step)
        if entry is None:
            return {"received": 0, "hist": {}}
        return {"received": entry[0][0], "hist": hist.sparse(entry[1])}


class Client(asyncio.Protocol):
    """One Socket.IO client over an Engine.IO websocket.

    ``mode`` is ``"connect"`` for a websocket-only session (wait for the open
    packet, connect the default namespace) or ``"upgrade"`` for a session that
    was opened over long-polling (probe, then upgrade).
    """

    def __init__(
        self,
        request: bytes,
        stats: Stats,
        mode: str = "connect",
        member: Member | None = None,
        auth: Json | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.stats = stats
        self.mode = mode
        self.member = member
        self.connect_packet = b"40" + (json.dumps(auth).encode() if auth else b"")
        self.recovering = auth is not None
        self.answer: Json = {}
        self.answered_at = 0
        self.ready: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.acks: dict[int, Callable[[Any], None]] = {}
        self.next_ack = 0
        self.open = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.open = True
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        lost = self.open  # False when this side closed it
        self.open = False
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        elif lost and self.mode == "connect":
            self.stats.disconnects += 1
            if self.member is not None:
                self.member.lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.fail(ProtocolError(buffer[: buffer.find(b"\r\n")].decode(errors="replace")))
                return
            self.upgraded = True
            if self.mode == "upgrade":
                self.send(b"2probe")
            buffer = buffer[end + 4 :]
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first = buffer[pos]
            length = buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                if length > MAX_FRAME:
                    self.fail(ProtocolError(f"frame of {length} bytes"))
                    return
                break
            payload = buffer[pos + head : end]
            pos = end
            opcode = first & 0x0F
            if not first & 0x80:
                self.fail(ProtocolError("fragmented frames are not supported"))
                return
            if opcode == 1:
                self.packet(payload)
            elif opcode == 8:
                self.close()
                return
            elif opcode == 9 and self.transport is not None:
                self.transport.write(ws_control(10, payload))
        self.buffer = buffer[pos:] if pos < size else b""

    # Engine.IO and Socket.IO

    def packet(self, packet: bytes) -> None:
        if packet.startswith(MESSAGE_PREFIX):
            if self.member is not None:
                self.member.message(packet, self)
            else:
                self.stats.message(packet)
        elif packet == b"2":
            self.send(b"3")
        elif packet.startswith(b"43"):
            bracket = packet.index(b"[", 2)
            callback = self.acks.pop(int(packet[2:bracket]), None)
            if callback is not None:
                callback(json.loads(packet[bracket:]))
        elif packet.startswith(b"40") and len(packet) > 2:
            if self.member is not None:
                self.answer = json.loads(packet[2:])
                self.answered_at = time.monotonic_ns()
            self.settle()
        elif packet.startswith(b"0{") and self.mode == "connect":
            self.send(self.connect_packet)
        elif packet == b"3probe" and self.mode == "upgrade":
            self.send(b"5")
            self.settle()
        elif packet.startswith(b"42"):
            self.stats.other_events += 1
        elif packet.startswith((b"44", b"41", b"1")):
            self.fail(ProtocolError(f"server refused or closed: {packet[:80]!r}"))

    def settle(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.close()

    def send(self, packet: bytes) -> None:
        if self.transport is not None and self.open:
            self.transport.write(ws_frame(packet))

    def emit(self, event: str, data: Any, callback: Callable[[Any], None] | None = None) -> None:
        """Send a Socket.IO event; ``callback`` gets its acknowledgement."""
        body = json.dumps([event, data], separators=(",", ":")).encode()
        if callback is None:
            self.send(b"42" + body)
            return
        self.next_ack += 1
        self.acks[self.next_ack] = callback
        self.send(b"42" + str(self.next_ack).encode() + body)

    async def call(self, event: str, data: Any, timeout: float = CONNECT_TIMEOUT) -> Any:
        """Send an event and wait for its acknowledgement."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.emit(event, data, lambda args: answer.done() or answer.set_result(args))
        result = await asyncio.wait_for(answer, timeout)
        return result[0] if result else None

    def close(self) -> None:
        if self.transport is not None and self.open:
            self.open = False
            self.transport.close()


class Member:
    """A client that lives through several connections, recovering its session on each.

    ``seen[n]`` counts how often message number ``n`` arrived. A reconnect
    starts ``delay`` seconds after a lost connection, through ``gate`` (so that
    at most so many reconnect at once), and is tried again until it succeeds or
    the worker stops; a session that does not come back (a new ``pid``) joins
    the room again, as an application would, and counts as not recovered.
    """

    def __init__(self, worker: Worker, target: tuple[str, int, str], room: str) -> None:
        self.worker = worker
        self.target = target
        self.room = room
        self.client: Client | None = None
        self.pid: str | None = None
        self.sid: str | None = None
        self.offset: str | None = None
        self.seen = bytearray()
        self.highest = -1
        self.out_of_order = 0
        self.replayed = 0
        self.reset()

    def reset(self) -> None:
        """Forget what was counted (a new phase of the workload)."""
        self.seen = bytearray()
        self.highest = -1
        self.out_of_order = 0
        self.replayed = 0
        self.losses = 0
        self.recovered = 0
        self.not_recovered = 0
        self.attempts = 0
        self.lost_at: float | None = None
        self.back_at: float | None = None
        self.first_attempt_at: float | None = None

    def message(self, packet: bytes, client: Client) -> None:
        """Count one message; replayed when it came back with a session after a loss.

        That is a message published before this connection's CONNECT answer that
        arrives on it (socket.io sends a recovered session's missed packets before
        its answer, wsk after).
        """
        start = packet.find(b"~", len(MESSAGE_PREFIX))
        if start < 0:
            return
        fields = packet[start + 1 : start + 64].split(b"~", 3)
        sent_ns, seq = int(fields[1]), int(fields[2])
        if seq >= len(self.seen):
            self.seen.extend(bytes(seq + 1024 - len(self.seen)))
        if self.seen[seq] < 255:
            self.seen[seq] += 1
        if seq < self.highest:
            self.out_of_order += 1
        self.highest = max(self.highest, seq)
        if (
            client.mode == "connect"
            and client.recovering
            and (not client.answered_at or sent_ns < client.answered_at)
        ):
            self.replayed += 1
        if packet.endswith(b'"]'):
            cut = packet.rfind(b',"')
            if cut > 0:
                self.offset = packet[cut + 2 : -2].decode()

    async def connect(self) -> None:
        """Open a connection; a recovery when a ``pid`` is known, else a new session."""
        auth = {"pid": self.pid, "offset": self.offset} if self.pid and self.offset else None
        host, port, path = self.target
        client = await self.worker._open(
            host, port, path, self.worker.cookie, self, auth, RECOVERY_CONNECT_TIMEOUT
        )
        answer = client.answer
        recovering = auth is not None
        recovered = recovering and answer.get("pid") == self.pid
        self.sid = answer.get("sid")
        self.pid = answer.get("pid")
        self.client = client
        if not recovered:
            reply = await client.call("join", {"room": self.room})
            if not isinstance(reply, dict) or reply.get("room") != self.room:
                raise ProtocolError(f"join answered {reply!r}")
        if recovering:
            self.back_at = time.monotonic()
            if recovered:
                self.recovered += 1
            else:
                self.not_recovered += 1

    def lost(self, client: Client) -> None:
        if client is not self.client or self.worker.stopping:
            return
        self.client = None
        self.losses += 1
        self.lost_at = time.monotonic()
        self.back_at = None
        self.worker.spawn(self.come_back())

    async def come_back(self) -> None:
        await asyncio.sleep(self.worker.reconnect_delay * random.uniform(0.5, 1.0))
        while not self.worker.stopping:
            async with self.worker.gate:
                if self.first_attempt_at is None:
                    self.first_attempt_at = time.monotonic()
                self.attempts += 1
                try:
                    await self.connect()
                    return
                except (TimeoutError, OSError, ProtocolError, ValueError) as exc:
                    name = failure_name(exc)
                    failures = self.worker.reconnect_failures
                    failures[name] = failures.get(name, 0) + 1
                    self.worker.reconnect_examples.setdefault(name, str(exc)[:160])
            await asyncio.sleep(self.worker.reconnect_delay)

    def drop(self) -> None:
        """Break the connection without a word (no close frame, no disconnect packet)."""
        client = self.client
        if client is not None and client.transport is not None:
            client.transport.close()

    def tally(self, total: int) -> Json:
        counts = self.seen[:total].ljust(total, b"\0")
        return {
            "lost": counts.count(0),
            "duplicated": sum(c - 1 for c in counts if c > 1),
            "beyond": sum(self.seen[total:]),
        }


class HttpConnection:
    """A keep-alive HTTP/1.1 connection for Engine.IO long-polling."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, target: str, host: str, body: bytes = b"") -> bytes:
        """Send one request; return the body of a 200 answer, raise otherwise."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if method == "POST":
            lines += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                value = value.strip()
                if name == "set-cookie":
                    pair = value.split(";", 1)[0]
                    if "=" in pair:
                        key, val = pair.split("=", 1)
                        self.cookies[key] = val
                headers[name] = value
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunked()
        else:
            content = await self.reader.read()
        if status_line.split(" ", 2)[1] != "200":
            raise ProtocolError(f"{method} answered {status_line!r}: {content[:80]!r}")
        return content

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


class Worker:
    """The clients of this process and the commands that drive them."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.clients: list[Client] = []
        self.acked = 0
        self.members: list[Member] = []
        self.cookie: str | None = None
        self.reconnect_delay = 0.5
        self.gate = asyncio.Semaphore(100)
        self.reconnect_failures: dict[str, int] = {}
        self.reconnect_examples: dict[str, str] = {}
        self.stopping = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.publishing: asyncio.Task[Json] | None = None
        self.next_seq = 0

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # commands

    async def connect(
        self,
        url: str,
        count: int,
        concurrency: int = 100,
        room: str | None = None,
        cookie: str | None = None,
        rooms: list[str] | None = None,
    ) -> Json:
        """Open ``count`` websocket clients to ``url``; each joins ``room`` and ``rooms``."""
        parts = urlsplit(url)
        host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        path = path if path.endswith("/") else path + "/"
        gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        started = time.monotonic()

        async def one() -> None:
            async with gate:
                try:
                    client = await self._open(host, port, path, cookie)
                    for one in ([room] if room is not None else []) + (rooms or []):
                        answer = await client.call("join", {"room": one})
                        if not isinstance(answer, dict) or answer.get("room") != one:
                            raise ProtocolError(f"join answered {answer!r}")
                    self.clients.append(client)
                except (TimeoutError, OSError, ProtocolError) as exc:
                    name = failure_name(exc)
                    failures[name] = failures.get(name, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
        return {
            "connected": sum(1 for c in self.clients if c.open),
            "failures": failures,
            "seconds": time.monotonic() - started,
        }

    async def _open(
        self,
        host: str,
        port: int,
        path: str,
        cookie: str | None,
        member: Member | None = None,
        auth: Json | None = None,
        timeout: float = CONNECT_TIMEOUT,
    ) -> Client:
        request = upgrade_request(f"{host}:{port}", path, "EIO=4&transport=websocket", cookie)
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(
                lambda: Client(request, self.stats, member=member, auth=auth), host, port
            ),
            CONNECT_TIMEOUT,
        )
        try:
            await asyncio.wait_for(asyncio.shield(client.ready), timeout)
        except BaseException:
            # the connection's own outcome is of no interest any more
            client.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
            client.close()
            raise
        return client

    async def publish(
        self,
        rate: float,
        seconds: float,
        room: str | None,
        size: int,
        step: int,
        tail_step: int | None = None,
        tail_from: int | None = None,
        rooms: list[str] | None = None,
    ) -> Json:
        """Publish ``rate`` messages a second for ``seconds`` from this process' first client.

        Messages from the ``tail_from``-th on are marked ``tail_step`` instead of
        ``step``, so that the end of a step can be judged apart from its start.
        With ``rooms``, the messages go to each of them in turn instead of ``room``.
        """
        client = self.clients[0]
        total = max(1, round(rate * seconds))
        pad = "x" * size
        sent = 0
        started = time.monotonic()

        def acked(_: Any) -> None:
            self.acked += 1

        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                mark = tail_step if tail_from is not None and sent >= tail_from else step
                stamp = f"~{mark}~{time.monotonic_ns()}~{self.next_seq}~"
                self.next_seq += 1
                data: Json = {"data": stamp + pad[len(stamp) :]}
                if rooms:
                    data["room"] = rooms[sent % len(rooms)]
                elif room is not None:
                    data["room"] = room
                client.emit("publish", data, acked)
                sent += 1
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        return {"sent": sent, "seconds": time.monotonic() - started, "acked": self.acked}

    # the recovery workload

    async def publish_start(self, rate: float, room: str, size: int, step: int) -> Json:
        """Start publishing ``rate`` messages a second, numbered from 0, until ``publish_stop``."""
        self.next_seq = 0
        self.acked = 0
        self.publishing = asyncio.ensure_future(self.publish(rate, 1e9, room, size, step))
        return {}

    async def publish_stop(self) -> Json:
        """Stop publishing; how many were sent and acknowledged (after a grace for acks)."""
        if self.publishing is None:
            raise ProtocolError("not publishing")
        self.publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.publishing
        self.publishing = None
        sent = self.next_seq
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.acked < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"sent": sent, "acked": self.acked}

    async def members_join(
        self,
        url: str,
        count: int,
        room: str,
        cookie: str | None = None,
        concurrency: int = 100,
        reconnect_delay: float = 0.5,
    ) -> Json:
        """Open ``count`` members (recovering clients) into ``room``, through ``cookie``'s node."""
        parts = urlsplit(url)
        host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        path = path if path.endswith("/") else path + "/"
        self.cookie = cookie
        self.reconnect_delay = reconnect_delay
        self.gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}

        async def one() -> None:
            member = Member(self, (host, port, path), room)
            async with self.gate:
                try:
                    await member.connect()
                    self.members.append(member)
                except (TimeoutError, OSError, ProtocolError) as exc:
                    name = failure_name(exc)
                    failures[name] = failures.get(name, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
        return {"connected": len(self.members), "failures": failures}

    async def members_reset(self) -> Json:
        for member in self.members:
            member.reset()
        self.reconnect_failures = {}
        self.reconnect_examples = {}
        return {}

    async def members_drop(self) -> Json:
        """Break every member's connection at once; each comes back by itself."""
        for member in self.members:
            member.drop()
        return {"dropped": len(self.members)}

    async def members_status(self, total: int = 0) -> Json:
        """Where the members are: connected, back after a loss, and what they counted.

        ``total`` is how many messages were published: the tally counts what
        each member lost or got twice of them.
        """
        members = self.members
        back = [m for m in members if m.losses and m.back_at is not None]
        times = hist.new()
        for m in back:
            assert m.back_at is not None and m.lost_at is not None
            times[hist.bucket(int((m.back_at - m.lost_at) * 1e9))] += 1
        firsts = [m.first_attempt_at for m in members if m.first_attempt_at is not None]
        result: Json = {
            "members": len(members),
            "connected": sum(1 for m in members if m.client is not None and m.client.open),
            "lost": sum(1 for m in members if m.losses),
            "back": len(back),
            "recovered": sum(m.recovered for m in members),
            "not_recovered": sum(m.not_recovered for m in members),
            "attempts": sum(m.attempts for m in members),
            "first_attempt": min(firsts) if firsts else None,
            "first_loss": min((m.lost_at for m in members if m.lost_at), default=None),
            "first_back": min((m.back_at for m in back if m.back_at), default=None),
            "last_back": max((m.back_at for m in back if m.back_at), default=None),
            "replayed": sum(m.replayed for m in members),
            "out_of_order": sum(m.out_of_order for m in members),
            "received": sum(sum(m.seen) for m in members),
            "reconnect_failures": dict(self.reconnect_failures),
            "reconnect_examples": dict(self.reconnect_examples),
            "recover_hist": hist.sparse(times),
        }
        if total:
            tallies = [m.tally(total) for m in members]
            for key in ("lost", "duplicated", "beyond"):
                result[f"messages_{key}"] = sum(t[key] for t in tallies)
            result["members_with_loss"] = sum(1 for t in tallies if t["lost"])
        return result

    async def received(self, steps: list[int]) -> Json:
        """What this process' clients received of each of ``steps``."""
        return {
            "steps": {str(step): self.stats.report(step) for step in steps},
            "open": sum(1 for c in self.clients if c.open),
            "disconnects": self.stats.disconnects,
            "other_events": self.stats.other_events,
        }

    async def close(self) -> Json:
        """Close every client."""
        self.stopping = True
        for task in list(self.tasks):
            task.cancel()
        for member in self.members:
            if member.client is not None:
                member.client.close()
        self.members.clear()
        self.stopping = False
        for client in self.clients:
            client.close()
        closed = len(self.clients)
        self.clients.clear()
        await asyncio.sleep(0.1)
        return {"closed": closed}

    async def handshakes(self, url: str, mode: str, concurrency: int, seconds: float) -> Json:
        """Open and close sessions back to back for ``seconds``, ``concurrency`` at a time.

        ``mode`` is ``websocket`` (websocket only) or ``polling`` (long-polling
        handshake, Socket.IO connect over polling, then the websocket upgrade). A
        handshake counts once the Socket.IO session is connected (and upgraded).
        """
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        handshake = self._polling_handshake if mode == "polling" else self._websocket_handshake
        times = hist.new()
        failures: dict[str, int] = {}
        done = 0
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                started = time.monotonic_ns()
                try:
                    await asyncio.wait_for(handshake(host, port, path), HANDSHAKE_TIMEOUT)
                except (TimeoutError, OSError, ProtocolError, ValueError) as exc:
                    name = failure_name(exc)
                    failures[name] = failures.get(name, 0) + 1
                    continue
                times[hist.bucket(time.monotonic_ns() - started)] += 1
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return {
            "completed": done,
            "failures": failures,
            "seconds": time.monotonic() - started,
            "hist": hist.sparse(times),
        }

    async def _websocket_handshake(self, host: str, port: int, path: str) -> None:
        client = await self._open(host, port, path, None)
        client.close()

    async def _polling_handshake(self, host: str, port: int, path: str) -> None:
        authority = f"{host}:{port}"
        reader, writer = await asyncio.open_connection(host, port)
        http = HttpConnection(reader, writer)
        client: Client | None = None
        try:
            query = f"EIO=4&transport=polling&t={random.getrandbits(32):x}"
            opened = await http.request("GET", f"{path}?{query}", authority)
            if not opened.startswith(b"0{"):
                raise ProtocolError(f"handshake answered {opened[:80]!r}")
            sid = json.loads(opened[1:])["sid"]
            target = f"{path}?EIO=4&transport=polling&sid={sid}"
            await http.request("POST", target, authority, b"40")
            polled = await http.request("GET", target, authority)
            if not any(p.startswith(b"40") for p in polled.split(b"\x1e")):
                raise ProtocolError(f"poll answered {polled[:80]!r}")
            cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items()) or None
            request = upgrade_request(
                authority, path, f"EIO=4&transport=websocket&sid={sid}", cookie
            )
            loop = asyncio.get_running_loop()
            _, client = await loop.create_connection(
                lambda: Client(request, self.stats, mode="upgrade"), host, port
            )
            await client.ready
        finally:
            http.close()
            if client is not None:
                client.close()

    async def ping(self) -> Json:
        return {}


def failure_name(exc: BaseException) -> str:
    """A short name for why a connection failed: ``OSError:EMFILE``, ``TimeoutError``."""
    name = type(exc).__name__
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in errno.errorcode:
        return f"{name}:{errno.errorcode[code]}"
    return name


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise this process' soft limit on open files to its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def serve() -> None:
    """Answer commands from stdin, one JSON line each, until stdin closes."""
    worker = Worker()
    commands: dict[str, Callable[..., Awaitable[Json]]] = {
        "connect": worker.connect,
        "publish": worker.publish,
        "received": worker.received,
        "close": worker.close,
        "handshakes": worker.handshakes,
        "ping": worker.ping,
        "publish_start": worker.publish_start,
        "publish_stop": worker.publish_stop,
        "members_join": worker.members_join,
        "members_reset": worker.members_reset,
        "members_drop": worker.members_drop,
        "members_status": worker.members_status,
    }
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while line := await reader.readline():
        command = json.loads(line)
        name = command.pop("cmd")
        try:
            reply = await commands[name](**command)
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": f"{name}: {type(exc).__name__}: {exc}"}
        reply["cpu"] = time.process_time()
        out.write(json.dumps(reply) + "\n")
        out.flush()
    await worker.close()


def main() -> None:
    """Run one load-generator process."""
    raise_descriptor_limit()
    uvloop.run(serve())


if __name__ == "__main__":
    main()
