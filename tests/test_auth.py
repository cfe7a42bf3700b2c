"""Client tokens and what they allow, against real nodes, Redis and HAProxy.

Every refusal is tried while an authorised client sits on the same node: it
stays connected and keeps working. Tokens are minted by wsk-token itself, or
by PyJWT (and, for the attacks, by hand) where a token must be wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clients import NODE_DIR, NodeClient
from conftest import Cluster
from processes import BIN, wait_until


def wsk_token(key_file: Path, sub: str, rooms: str = "", publish: str = "", ttl: str = "600"):
    """A token from the wsk-token command."""
    argv = [str(BIN / "wsk-token"), "--auth-jwt-key-file", str(key_file), "--sub", sub]
    argv += ["--rooms", rooms, "--publish", publish, "--ttl", ttl]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.strip()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_hs256(claims: dict, secret: bytes) -> str:
    """An HS256 token made by hand, as an attacker would (PyJWT refuses a PEM as secret)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def unsigned(claims: dict) -> str:
    """An ``alg: none`` token: no signature at all."""
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(claims).encode())}."


def claims(sub: str = "mallory", ttl: float = 600, **more) -> dict:
    return {"sub": sub, "exp": int(time.time() + ttl), **more}


def refusal(url: str, auth, transport: str = "websocket") -> str:
    """The connect_error message a client gets for ``auth``; fails if it connects."""
    client = socketio.Client(reconnection=False)
    said: list = []
    client.on("connect_error", said.append)
    try:
        client.connect(url, socketio_path="/wsk", transports=[transport], auth=auth, wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        client.disconnect()
        pytest.fail(f"{auth!r} was let in")
    wait_until(lambda: said, 5, what="connect_error")
    return said[0]["message"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """An HS256 secret, and RSA and EC key pairs, as files."""
    directory = tmp_path_factory.mktemp("keys")
    files = {"secret": directory / "secret", "other-secret": directory / "other-secret"}
    files["secret"].write_text(os.urandom(32).hex() + "\n")
    files["other-secret"].write_text(os.urandom(32).hex() + "\n")
    pairs = {
        "rsa": rsa.generate_private_key(65537, 2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }
    for name, private in pairs.items():
        files[f"{name}-private"] = directory / f"{name}-private.pem"
        files[f"{name}-private"].write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{name}-public"] = directory / f"{name}-public.pem"
        files[f"{name}-public"].write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return files


@pytest.fixture(scope="module")
def secured(tmp_path_factory, keys):
    """One node with --auth required and an HS256 secret, behind HAProxy."""
    cluster = Cluster(tmp_path_factory.mktemp("auth")).start(
        nodes=1, auth="required", auth_jwt_key_file=keys["secret"]
    )
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def resident(secured, keys):
    """An authorised client that stays on the node through every refusal."""
    token = wsk_token(keys["secret"], "alice", rooms="chat.*,news", publish="*")
    client = secured.client(auth={"token": token})
    assert client.call("join", {"room": "news"})["room"] == "news"
    return client


def still_serves(resident) -> None:
    assert resident.sio.connected
    assert resident.call("whoami")["user"] == "alice"
    marker = uuid.uuid4().hex
    resident.call("publish", {"room": "news", "data": marker})
    resident.wait_for("message", lambda m: m["data"] == marker)


def secret_of(keys) -> bytes:
    return keys["secret"].read_text().strip().encode()


REFUSED_TOKENS = {
    "no token": (lambda keys: None, "unauthorized: no token", "no_token"),
    "empty auth": (lambda keys: {}, "unauthorized: no token", "no_token"),
    "bad signature": (
        lambda keys: {"token": forged_hs256(claims(), keys["other-secret"].read_bytes().strip())},
        "unauthorized: bad signature",
        "bad_signature",
    ),
    "expired": (
        lambda keys: {"token": jwt.encode(claims(ttl=-60), secret_of(keys), algorithm="HS256")},
        "unauthorized: token expired",
        "expired",
    ),
    "alg none": (
        lambda keys: {"token": unsigned(claims(rooms=["*"], publish=["*"]))},
        "unauthorized: algorithm not allowed",
        "algorithm",
    ),
    "no exp": (
        lambda keys: {"token": jwt.encode({"sub": "x"}, secret_of(keys), algorithm="HS256")},
        "unauthorized: token has no 'exp' claim",
        "missing_claim",
    ),
    "garbage": (
        lambda keys: {"token": "not.a.token"},
        "unauthorized: malformed token",
        "malformed",
    ),
    "rooms not a list": (
        lambda keys: {"token": jwt.encode(claims(rooms="*"), secret_of(keys), algorithm="HS256")},
        "unauthorized: the 'rooms' claim must be a list of patterns",
        "bad_claims",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_TOKENS))
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_bad_token_gets_connect_error_while_others_on_the_node_carry_on(
    secured, resident, keys, case, transport
):
    make, message, reason = REFUSED_TOKENS[case]
    node = secured.nodes[0]
    before = node.metric("wsk_auth_refused_total", reason=reason)
    lines_before = node.log().count(message)

    assert refusal(secured.haproxy.url, make(keys), transport) == message

    wait_until(
        lambda: node.metric("wsk_auth_refused_total", reason=reason) == before + 1,
        5,
        what=f"wsk_auth_refused_total{{reason={reason!r}}} to count it",
    )
    wait_until(lambda: node.log().count(message) == lines_before + 1, 5, what="one log line")
    assert "Traceback" not in node.log()
    still_serves(resident)


def test_whoami_names_the_user_of_the_token(secured, resident, keys):
    token = wsk_token(keys["secret"], "bob", rooms="chat.*")
    client = secured.client(auth={"token": token})
    answer = client.call("whoami")
    assert answer["user"] == "bob"
    assert answer["node"] == "node1"
    assert "connected from" in secured.nodes[0].log() and "as user 'bob'" in secured.nodes[0].log()


def test_a_room_the_token_does_not_name_is_forbidden_and_the_client_stays(secured, resident, keys):
    node = secured.nodes[0]
    before = node.metric("wsk_events_refused_total", default=0, reason="forbidden")
    client = secured.client(auth={"token": wsk_token(keys["secret"], "bob", rooms="chat.*")})
    assert client.call("join", {"room": "news"}) == {"error": "forbidden: may not join room 'news'"}
    assert client.call("join", {"room": "chat.general"})["room"] == "chat.general"
    assert client.sio.connected
    assert node.metric("wsk_events_refused_total", reason="forbidden") == before + 1
    still_serves(resident)


def test_publishing_into_a_room_the_token_does_not_name_is_forbidden(secured, resident, keys):
    token = wsk_token(keys["secret"], "bob", rooms="chat.*,news", publish="chat.*")
    client = secured.client(auth={"token": token})
    marker = uuid.uuid4().hex
    answer = client.call("publish", {"room": "news", "data": marker})
    assert answer == {"error": "forbidden: may not publish to room 'news'"}
    assert client.call("publish", {"room": "chat.x", "data": "fine"})["node"] == "node1"
    time.sleep(0.5)
    assert not [m for m in resident.received("message") if m["data"] == marker]
    assert client.sio.connected
    still_serves(resident)


def test_publishing_to_everyone_needs_the_star_itself(secured, resident, keys):
    narrow = secured.client(
        auth={"token": wsk_token(keys["secret"], "bob", rooms="chat.*", publish="chat.*")}
    )
    marker = uuid.uuid4().hex
    answer = narrow.call("publish", {"data": marker})
    assert answer == {"error": "forbidden: may not publish to every client"}
    wide = secured.client(auth={"token": wsk_token(keys["secret"], "carol", publish="*")})
    assert wide.call("publish", {"data": marker})["node"] == "node1"
    resident.wait_for("message", lambda m: m["data"] == marker)
    assert narrow.sio.connected
    still_serves(resident)


def test_wsk_emit_keeps_full_rights(secured, resident):
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
    done = subprocess.run(
        [
            str(BIN / "wsk-emit"),
            "--redis-url",
            secured.redis.url,
            "--room",
            "news",
            "message",
            json.dumps({"data": marker}),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    resident.wait_for("message", lambda m: m == {"data": marker})


def test_node_clients_get_the_reason_and_an_authorised_one_gets_in(secured, resident, keys):
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("socket.io-client is not installed: 'make test' installs it")
    expired = jwt.encode(claims(ttl=-60), secret_of(keys), algorithm="HS256")
    refused = NodeClient(secured.haproxy.url, "websocket", seconds=15, token=expired)
    welcome = NodeClient(
        secured.haproxy.url,
        "polling,websocket",
        seconds=15,
        token=wsk_token(keys["secret"], "dave", rooms="chat.*"),
    )
    try:

        def errors() -> list:
            return [line["data"] for line in refused.lines if line["what"] == "connect_error"]

        wait_until(errors, 10, what="the Node client's connect_error")
        assert errors()[0] == "unauthorized: token expired"
        assert not refused.nodes()
        wait_until(welcome.nodes, 10, what="the authorised Node client's whoami")
        whoami = next(line["data"] for line in welcome.lines if line["what"] == "whoami")
        assert whoami["user"] == "dave"
        welcome.send("join", {"room": "news"})
        wait_until(
            lambda: any(line["what"] == "ack" for line in welcome.lines), 10, what="the join's ack"
        )
        ack = next(line["data"]["answer"] for line in welcome.lines if line["what"] == "ack")
        assert ack == {"error": "forbidden: may not join room 'news'"}
    finally:
        refused.stop()
        welcome.stop()
    still_serves(resident)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_public_keys_take_their_own_algorithm_and_refuse_the_confusion(cluster, keys, kind):
    cluster.start(nodes=1, auth="required", auth_jwt_key_file=keys[f"{kind}-public"])
    token = wsk_token(keys[f"{kind}-private"], "erin", rooms="chat.*")
    algorithm = jwt.get_unverified_header(token)["alg"]
    assert algorithm == {"rsa": "RS256", "ec": "ES256"}[kind]
    client = cluster.client(auth={"token": token})
    assert client.call("whoami")["user"] == "erin"
    # the public key as an HMAC secret: the classic algorithm confusion
    confused = forged_hs256(claims(rooms=["*"], publish=["*"]), keys[f"{kind}-public"].read_bytes())
    assert (
        refusal(cluster.haproxy.url, {"token": confused}) == "unauthorized: algorithm not allowed"
    )
    other = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    forged = jwt.encode(claims(), other, algorithm=algorithm)
    assert refusal(cluster.haproxy.url, {"token": forged}) == "unauthorized: bad signature"
    assert client.sio.connected and client.call("whoami")["user"] == "erin"


def test_optional_auth_lets_anonymous_clients_into_the_anonymous_rooms_only(cluster, keys):
    cluster.start(
        nodes=1, auth="optional", auth_jwt_key_file=keys["secret"], anonymous_rooms="lobby,public.*"
    )
    anonymous = cluster.client()
    assert anonymous.call("whoami")["user"] is None
    assert anonymous.call("join", {"room": "lobby"})["room"] == "lobby"
    assert anonymous.call("join", {"room": "public.news"})["room"] == "public.news"
    assert anonymous.call("join", {"room": "staff"}) == {
        "error": "forbidden: may not join room 'staff'"
    }
    assert anonymous.call("publish", {"room": "lobby", "data": "hi"})["node"] == "node1"
    assert anonymous.call("publish", {"data": "all"}) == {
        "error": "forbidden: may not publish to every client"
    }
    # a bad token is refused, not taken for no token
    expired = jwt.encode(claims(ttl=-60), secret_of(keys), algorithm="HS256")
    assert refusal(cluster.haproxy.url, {"token": expired}) == "unauthorized: token expired"
    staff = cluster.client(auth={"token": wsk_token(keys["secret"], "frank", rooms="staff")})
    assert staff.call("join", {"room": "staff"})["room"] == "staff"
    assert anonymous.sio.connected


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--auth", "required"], "--auth required needs --auth-jwt-key-file"),
        (["--auth", "off", "--anonymous-rooms", "x"], "--anonymous-rooms applies only with"),
        (["--auth", "required", "--auth-jwt-key-file", "{rsa-private}"], "holds a private key"),
        (["--auth", "optional", "--auth-jwt-key-file", "{short}"], "at least 32 bytes"),
        (["--auth", "maybe"], "must be one of off, optional, required"),
    ],
)
def test_the_node_refuses_an_auth_setup_it_cannot_use_in_one_line(keys, tmp_path, arguments, said):
    short = tmp_path / "short"
    short.write_text("too short\n")
    files = {"{rsa-private}": str(keys["rsa-private"]), "{short}": str(short)}
    argv = [str(BIN / "wsk-server"), *(files.get(a, a) for a in arguments)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 2
    assert said in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_wsk_token_mints_what_it_is_told(keys):
    token = wsk_token(keys["secret"], "gina", rooms="chat.*,news", publish="chat.*", ttl="120")
    decoded = jwt.decode(token, secret_of(keys), algorithms=["HS256"])
    assert decoded["sub"] == "gina"
    assert decoded["rooms"] == ["chat.*", "news"]
    assert decoded["publish"] == ["chat.*"]
    assert 110 <= decoded["exp"] - time.time() <= 121
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsk.cli.token",
            "--sub",
            "x",
            "--auth-jwt-key-file",
            str(keys["rsa-public"]),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "needs the PEM private key" in done.stderr


def test_a_key_file_with_two_keys_takes_tokens_of_either_during_a_rotation(cluster, keys, tmp_path):
    both = tmp_path / "rotating"
    new_secret = os.urandom(32).hex()
    # the new secret first (wsk-token signs with it), the old one after, and an RSA public key
    both.write_text(f"{new_secret}\n{keys['secret'].read_text()}{keys['rsa-public'].read_text()}")
    cluster.start(nodes=1, auth="required", auth_jwt_key_file=both)
    old = cluster.client(auth={"token": wsk_token(keys["secret"], "old")})
    new = cluster.client(auth={"token": wsk_token(both, "new")})
    rs = cluster.client(auth={"token": wsk_token(keys["rsa-private"], "rs")})
    assert [c.call("whoami")["user"] for c in (old, new, rs)] == ["old", "new", "rs"]
    assert jwt.decode(wsk_token(both, "x"), new_secret.encode(), algorithms=["HS256"])["sub"] == "x"
    stranger = jwt.encode(claims(), keys["other-secret"].read_text().strip(), algorithm="HS256")
    assert refusal(cluster.haproxy.url, {"token": stranger}) == "unauthorized: bad signature"
    # the public key as an HMAC secret is checked against the secrets alone, and fails
    confused = forged_hs256(claims(), keys["rsa-public"].read_bytes())
    assert refusal(cluster.haproxy.url, {"token": confused}) == "unauthorized: bad signature"
    assert "auth required (3 keys: HS256, RS256)" in cluster.nodes[0].log()
