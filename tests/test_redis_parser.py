"""A node parses Redis replies with hiredis, under eventlet, and still notices a dropped link.

Was: with hiredis installed (it is a dependency since), redis-py's own hiredis
parser checked every pooled connection with ``select.poll``, which eventlet's
monkey patching removes: every command of a node failed with "module 'select'
has no attribute 'poll'" (wsk.redisparse).

The checks run in a child process that patches the standard library as
``wsk-server`` does, against a real redis-server, over TCP and over TLS.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from processes import RedisServer

CHILD = textwrap.dedent(
    """
    import sys, warnings
    warnings.filterwarnings("ignore", message=r"\\s*Eventlet is deprecated")
    import eventlet
    eventlet.monkey_patch()
    from wsk import redisconn

    url = sys.argv[1]
    writer = redisconn.pool(url)
    assert writer.set("parser-check", "1")
    pool = writer.connection_pool
    connection = pool.get_connection()
    parser = type(connection._parser).__name__
    assert connection.can_read() is False  # an idle connection, ready to send on
    connection.send_command("PING")
    eventlet.sleep(0.05)
    assert connection.can_read() is True  # a reply nobody read
    connection.read_response()
    pool.release(connection)
    # Redis drops every client connection: the pool sees the hang-up when it hands
    # the connection out again, and opens a new one, without an error
    killer = redisconn.client(url)
    killed = killer.client_kill_filter(_type="normal", skipme=True)
    eventlet.sleep(0.2)  # Redis closes them after its answer: let the hang-ups arrive
    assert writer.get("parser-check") == b"1"
    reader = redisconn.reader(url)
    assert reader.xadd("parser-stream", {"m": "1"})
    assert reader.xread({"parser-stream": "0-0"}, count=1, block=100)
    print(parser, killed)
    """
)


@pytest.fixture(params=["tcp", "tls"])
def redis_server(request, tmp_path):
    server = RedisServer(tmp_path, password="parser-secret", tls=request.param == "tls").start()
    yield server
    server.stop()


def test_replies_are_parsed_by_hiredis_under_eventlet_and_a_dropped_link_is_replaced(
    redis_server,
):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    parser, killed = result.stdout.split()
    assert parser == "GreenHiredisParser"
    assert int(killed) >= 1  # the writer's connection was among those dropped
