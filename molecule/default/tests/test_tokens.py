"""Client tokens on the deployed cluster: the role installed the key and the nodes check it.

The demo inventory sets --auth optional with every room open to anonymous
clients, so test_cluster.py's clients need no token. Besides test_edge.py's
variables this reads WSK_VERIFY_JWT_KEY_FILE, the demo's HS256 secret.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import socketio
from test_cluster import PATH, PROCESSES, wait_for
from test_edge import CA_FILE, TLS_URL

from wsk.cli.client import CaSession

KEY_FILE = os.environ.get("WSK_VERIFY_JWT_KEY_FILE", "")


def wsk_token(*arguments: str) -> str:
    wsk_token = Path(sys.executable).parent / "wsk-token"
    argv = [str(wsk_token), "--auth-jwt-key-file", KEY_FILE, *arguments]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def demo_secret() -> bytes:
    return Path(KEY_FILE).read_text().strip().encode()


def connect(auth) -> tuple[socketio.Client, list]:
    client = socketio.Client(reconnection=False, http_session=CaSession(CA_FILE))
    errors: list = []
    client.on("connect_error", errors.append)
    with contextlib.suppress(socketio.exceptions.ConnectionError):
        client.connect(
            TLS_URL, socketio_path=PATH, transports=["websocket"], auth=auth, wait_timeout=10
        )
    if not client.connected:
        wait_for(lambda: errors, 5, "the connect_error")
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
