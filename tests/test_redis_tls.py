"""A node's TLS connections to Redis share one SSLContext, and are verified as before.

Was: redis-py built a context for every connection, parsing the system's CA store
(51 ms of CPU in the node's hub each time), so a pool growing under a burst of
recovering clients stalled every client of the node (wsk.redistls).
"""

from __future__ import annotations

import pytest
import redis

from processes import RedisServer
from testkit.procs import make_certificates
from wsk import redisconn


@pytest.fixture
def tls_redis(tmp_path):
    server = RedisServer(tmp_path, password="tls-secret", tls=True).start()
    yield server
    server.stop()


def test_the_connections_of_a_pool_and_of_a_reader_share_one_tls_context(tls_redis):
    writer = redisconn.pool(tls_redis.url)
    # checked out together, so that the pool opens five connections
    connections = [writer.connection_pool.get_connection() for _ in range(5)]
    try:
        for connection in connections:
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG", True)
        reader = redisconn.client(tls_redis.url)
        assert reader.ping()
        sockets = [c._sock for c in connections]
        sockets.append(reader.connection_pool.get_connection()._sock)
        assert len({id(sock) for sock in sockets}) == 6  # six connections
        assert len({id(sock.context) for sock in sockets}) == 1  # one context
    finally:
        for connection in connections:
            writer.connection_pool.release(connection)
        writer.close()


def test_a_server_whose_certificate_another_ca_signed_is_refused(tls_redis, tmp_path):
    other = tmp_path / "other-ca"
    make_certificates(other)
    trusting_a_stranger = tls_redis.url.replace(
        str(tls_redis.tls_dir / "ca.crt"), str(other / "ca.crt")
    )
    assert trusting_a_stranger != tls_redis.url
    assert redisconn.client(tls_redis.url).ping()  # its own CA: a context is made and kept
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redisconn.client(trusting_a_stranger).ping()
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redisconn.pool(trusting_a_stranger).ping()
