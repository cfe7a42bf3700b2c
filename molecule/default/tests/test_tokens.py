"""Client tokens on the deployed cluster: the role installed the key and the nodes check it.

The demo inventory sets --auth optional with every room open to anonymous
clients, so test_cluster.py's clients need no token. Besides test_edge.py's
variables this reads WSK_VERIFY_JWT_KEY_FILE, the demo's HS256 secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import socketio
from test_cluster import PATH, PROCESSES
from test_edge import CA_FILE, TLS_URL

from wsk.cli.client import CaSession
from wsk.client import Client

KEY_FILE = os.environ.get("WSK_VERIFY_JWT_KEY_FILE", "")


def wsk_token(*arguments: str) -> str:
    wsk_token = Path(sys.executable).parent / "wsk-token"
    argv = [str(wsk_token), "--auth-jwt-key-file", KEY_FILE, *arguments]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def demo_secret() -> bytes:
    return Path(KEY_FILE).read_text().strip().encode()


def connect(auth) -> tuple[Client, list]:
    """A client that connected, or the connect_error it got.

    wsk's client, not python-socketio's: python-socketio's reads and writes its TLS
    websocket from two threads at once, and about 1 in 100 of its wss:// connects
    through this frontend ended 1 ms after the OPEN packet, with neither CONNECT
    nor connect_error (``wsk.clienttls``; tests/test_client_tls.py).
    """
    client = Client(reconnection=False, http_session=CaSession(CA_FILE))
    errors: list = []
    client.on("connect_error", errors.append)
    failure = None
    try:
        client.connect(
            TLS_URL, socketio_path=PATH, transports=["websocket"], auth=auth, wait_timeout=10
        )
    except socketio.exceptions.ConnectionError as exc:
        failure = exc
    deadline = time.monotonic() + 5
    while not client.connected and not errors and time.monotonic() < deadline:
        time.sleep(0.1)
    if not client.connected and not errors:
        pytest.fail(f"neither connected nor refused: {failure}")
    return client, errors


def test_a_token_from_wsk_token_names_its_user_and_limits_its_rooms():
    client, errors = connect({"token": wsk_token("--sub", "verifier", "--rooms", "chat.*")})
    try:
        assert client.connected, errors
        answer = client.call("whoami", {}, timeout=10)
        assert answer["user"] == "verifier"
        assert answer["node"] in PROCESSES
        assert client.call("join", {"room": "chat.one"}, timeout=10)["room"] == "chat.one"
        refused = client.call("join", {"room": "elsewhere"}, timeout=10)
        assert refused == {"error": "forbidden: may not join room 'elsewhere'"}
        assert client.connected
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (
            lambda: jwt.encode({"sub": "x", "exp": 1}, demo_secret(), algorithm="HS256"),
            "token expired",
        ),
        (
            lambda: jwt.encode({"sub": "x", "exp": 4102444800}, "a" * 40, algorithm="HS256"),
            "bad signature",
        ),
        (lambda: "not.a.token", "malformed token"),
        (
            lambda: jwt.encode({"sub": "x", "exp": 4102444800}, None, algorithm="none"),
            "algorithm not allowed",
        ),
    ],
    ids=["expired", "bad-signature", "malformed", "alg-none"],
)
def test_a_bad_token_is_refused_even_where_anonymous_clients_may_go(token, reason):
    client, errors = connect({"token": token()})
    assert not client.connected
    assert errors and errors[0]["message"] == f"unauthorized: {reason}"


def test_an_anonymous_client_goes_where_the_demo_lets_it():
    client, errors = connect(None)
    try:
        assert client.connected, errors
        assert client.call("whoami", {}, timeout=10)["user"] is None
        assert "node" in client.call("publish", {"data": "anonymous"}, timeout=10)
    finally:
        client.disconnect()
