"""End-to-end checks of HAProxy's edge: TLS, the redirect, HSTS, the cookie, the per-address limits.

Molecule's verify.yml runs this file after test_cluster.py, from the host, with
the openssl and curl command-line tools and real Socket.IO clients (wsk's). Besides
test_cluster.py's variables it reads:

    WSK_VERIFY_TLS_URL          HAProxy's TLS side, e.g. https://127.0.0.1:8443
    WSK_VERIFY_REDIRECT_URL     its plain port that redirects, e.g. http://127.0.0.1:8081
    WSK_VERIFY_CA_FILE          the CA that signed HAProxy's certificate
    WSK_VERIFY_HSTS_MAX_AGE     the max-age the HSTS header must give
    WSK_VERIFY_LIMIT_CONN_RATE  new connections a second one address may open
    WSK_VERIFY_LIMIT_CONN_CUR   connections one address may hold open
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from test_cluster import COOKIE, PATH, PROCESSES, STATS_AUTH, STATS_URL, URL, wait_for

from wsk.cli.client import CaSession
from wsk.client import Client

TLS_URL = os.environ.get("WSK_VERIFY_TLS_URL", "https://127.0.0.1:8443")
REDIRECT_URL = os.environ.get("WSK_VERIFY_REDIRECT_URL", "http://127.0.0.1:8081")
CA_FILE = os.environ.get("WSK_VERIFY_CA_FILE", "")
HSTS_MAX_AGE = int(os.environ.get("WSK_VERIFY_HSTS_MAX_AGE", "63072000"))
CONN_RATE = int(os.environ.get("WSK_VERIFY_LIMIT_CONN_RATE", "50"))
CONN_CUR = int(os.environ.get("WSK_VERIFY_LIMIT_CONN_CUR", "100"))

TLS_ADDRESS = f"{urlsplit(TLS_URL).hostname}:{urlsplit(TLS_URL).port or 443}"
HANDSHAKE = f"{PATH}/?EIO=4&transport=polling"


def s_client(*options: str) -> str:
    """What ``openssl s_client`` says of one handshake with HAProxy's TLS port."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", TLS_ADDRESS, "-CAfile", CA_FILE, *options],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout + done.stderr


def curl_headers(*arguments: str) -> dict[str, list[str]]:
    """The status line and headers of one curl request, names in lower case."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-", *arguments],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    headers: dict[str, list[str]] = {"status": [lines[0]]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.lower(), []).append(value.strip())
    return headers


def stats_row(proxy: str, server: str = "BACKEND") -> dict[str, str]:
    csv = requests.get(f"{STATS_URL}/stats;csv", auth=STATS_AUTH, timeout=5).text
    lines = csv.splitlines()
    names = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        values = line.split(",")
        if values[:2] == [proxy, server]:
            return dict(zip(names, values, strict=False))
    raise AssertionError(f"no {proxy}/{server} on the stats page")


def test_the_verifier_has_the_demo_ca():
    assert CA_FILE, "WSK_VERIFY_CA_FILE is not set"
    assert "BEGIN CERTIFICATE" in Path(CA_FILE).read_text()


# Debian's OpenSSL refuses to offer TLS 1.0 and 1.1 at its default security
# level; SECLEVEL=0 makes this client offer them, so that the refusal seen is
# the server's: an alert from HAProxy ("alert protocol version"), not the
# client's own "no protocols available".
@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_are_refused_by_the_server(version):
    said = s_client(version, "-cipher", "DEFAULT@SECLEVEL=0")
    assert "no protocols available" not in said, said
    assert "alert protocol version" in said, said
    assert "Cipher is (NONE)" in said, said


@pytest.mark.parametrize(("version", "name"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted_with_a_verified_certificate(version, name):
    said = s_client(version, "-servername", "localhost")
    assert f"Protocol  : {name}" in said or f"New, {name}," in said, said
    assert "Verify return code: 0 (ok)" in said, said


def test_tls_1_2_offers_only_forward_secret_aead_ciphers():
    said = s_client("-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA")
    assert "Cipher is (NONE)" in said, said


def test_a_client_that_does_not_trust_the_ca_is_stopped():
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{TLS_URL}{HANDSHAKE}", verify=True, timeout=10)


def test_answers_over_tls_carry_hsts_and_a_secure_cookie():
    headers = curl_headers("--cacert", CA_FILE, f"{TLS_URL}{HANDSHAKE}")
    assert " 200" in headers["status"][0], headers
    assert headers["strict-transport-security"] == [f"max-age={HSTS_MAX_AGE}"], headers
    cookie = next(c for c in headers["set-cookie"] if c.startswith(f"{COOKIE}="))
    attributes = {a.strip().lower() for a in cookie.split(";")}
    assert {"secure", "httponly"} <= attributes, cookie
    # even a refusal over TLS carries the header
    refused = curl_headers("--cacert", CA_FILE, f"{TLS_URL}/")
    assert " 404" in refused["status"][0]
    assert refused["strict-transport-security"] == [f"max-age={HSTS_MAX_AGE}"]


def test_plain_http_redirects_to_https_with_the_same_path():
    headers = curl_headers(f"{REDIRECT_URL}{HANDSHAKE}&x=1")
    assert headers["status"][0].split()[1] == "301", headers
    assert headers["location"] == [f"{TLS_URL}{HANDSHAKE}&x=1"], headers
    assert "set-cookie" not in headers


def test_the_plain_port_beside_tls_keeps_a_cookie_it_can_send_back():
    headers = curl_headers(f"{URL}{HANDSHAKE}")
    assert " 200" in headers["status"][0], headers
    assert "strict-transport-security" not in headers
    cookie = next(c for c in headers["set-cookie"] if c.startswith(f"{COOKIE}="))
    assert "secure" not in {a.strip().lower() for a in cookie.split(";")}, cookie


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["wss", "https-polling"])
def test_a_real_client_over_tls_joins_publishes_and_hears_itself(transports):
    # wsk's client: python-socketio's drops about 1 in 100 wss:// connects (wsk.clienttls)
    client = Client(reconnection=False, http_session=CaSession(CA_FILE))
    heard: list[dict] = []
    client.on("message", heard.append)
    client.connect(TLS_URL, socketio_path=PATH, transports=transports, wait_timeout=10)
    try:
        assert client.transport() == transports[0]
        assert client.call("whoami", {}, timeout=10)["node"] in PROCESSES
        room = f"tls-{uuid.uuid4().hex[:8]}"
        assert client.call("join", {"room": room}, timeout=10)["room"] == room
        client.call("publish", {"room": room, "data": "over tls"}, timeout=10)
        wait_for(lambda: any(m["data"] == "over tls" for m in heard), 10, "the message back")
        if transports == ["polling"]:
            assert COOKIE in client.eio.http.cookies, "no stickiness cookie over HTTPS"
            # more poll cycles, each on the same node: the Secure cookie came back
            node = client.call("whoami", {}, timeout=10)["node"]
            for _ in range(4):
                time.sleep(0.5)
                assert client.call("whoami", {}, timeout=10)["node"] == node
    finally:
        client.disconnect()


def test_wsk_client_trusts_the_ca_it_is_given():
    wsk_client = Path(sys.executable).parent / "wsk-client"
    done = subprocess.run(
        [str(wsk_client), TLS_URL, "--ca-file", CA_FILE, "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("WSK_CLIENT_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " via websocket" in done.stdout, done.stdout
    assert ' whoami {"node":' in done.stdout, done.stdout


def ask_healthz(sock: socket.socket) -> str:
    """Send one request on ``sock``; the status code of the answer."""
    sock.sendall(
        f"GET {PATH}/healthz HTTP/1.1\r\nHost: verify\r\nConnection: close\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return "closed"
        answer += chunk
    return answer.split()[1].decode()


def plain_address() -> tuple[str, int]:
    parts = urlsplit(URL)
    return parts.hostname or "127.0.0.1", parts.port or 80


def settle() -> None:
    """Let HAProxy's per-second rate of this address fall back (it spans two periods)."""
    time.sleep(2.5)


def test_a_burst_of_connections_from_one_address_gets_429():
    settle()
    before = int(stats_row("over_conn_rate")["dreq"] or 0)
    count = CONN_RATE + 50
    assert count < CONN_CUR, "a burst above the rate must stay below the limit of open connections"
    sockets = [socket.create_connection(plain_address(), timeout=10) for _ in range(count)]
    try:
        codes = Counter(ask_healthz(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    # connections beyond the rate are refused; those within it are served
    assert 1 <= codes["200"] <= CONN_RATE, codes
    assert codes["429"] >= count - CONN_RATE, codes
    assert set(codes) <= {"200", "429"}, codes
    # and each refusal shows on the stats page
    assert int(stats_row("over_conn_rate")["dreq"]) - before == codes["429"]
    settle()
    with socket.create_connection(plain_address(), timeout=10) as sock:
        assert ask_healthz(sock) == "200"


def test_holding_too_many_connections_from_one_address_gets_429():
    settle()
    before = int(stats_row("over_conn_cur")["dreq"] or 0)
    held: list[socket.socket] = []
    try:
        # opened at half the rate limit: only the number held is over
        for _ in range(CONN_CUR):
            held.append(socket.create_connection(plain_address(), timeout=10))
            time.sleep(2 / CONN_RATE)
        with socket.create_connection(plain_address(), timeout=10) as one_more:
            assert ask_healthz(one_more) == "429"
        assert ask_healthz(held[0]) == "200"
    finally:
        for sock in held:
            sock.close()
    assert int(stats_row("over_conn_cur")["dreq"]) - before == 1
    settle()
    with socket.create_connection(plain_address(), timeout=10) as sock:
        assert ask_healthz(sock) == "200"
