"""/healthz and /metrics are answered before Socket.IO, whatever path Socket.IO is served at."""

from __future__ import annotations

import requests

from processes import RedisServer, WskNode
from processes import metric_in as metric


def test_healthz_and_metrics_answer_with_socketio_at_the_root(shared_cluster):
    node = shared_cluster.nodes[0]
    assert "path" not in node.options  # Socket.IO at its default, /

    health = requests.get(node.url + "/healthz", timeout=5)
    metrics = requests.get(node.url + "/metrics", timeout=5)

    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["node"] == node.name
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert 'wsk_build_info{python="' in metrics.text


def test_metrics_count_clients_events_and_heartbeats(shared_cluster):
    node = shared_cluster.nodes[0]
    before = requests.get(node.url + "/metrics", timeout=5).text
    client = shared_cluster.node_client(node)
    client.call("whoami")
    client.call("publish", {"data": "counted"})
    client.wait_for("okok")

    after = requests.get(node.url + "/metrics", timeout=5).text

    assert metric(after, "wsk_connected_clients") == metric(before, "wsk_connected_clients") + 1
    # the client's websocket, and the connection asking for the metrics
    assert metric(after, "wsk_open_connections") >= metric(before, "wsk_open_connections") + 1
    assert metric(after, "wsk_events_received_total", event="whoami") >= 1
    assert metric(after, "wsk_events_received_total", event="publish") >= 1
    assert metric(after, "wsk_events_sent_total", event="message") >= 1
    assert metric(after, "wsk_heartbeats_sent_total") >= 1
    assert metric(after, "wsk_redis_up") == 1


def test_unknown_event_names_share_one_label(shared_cluster):
    node = shared_cluster.nodes[1]
    client = shared_cluster.node_client(node)
    for i in range(5):
        client.sio.emit(f"made-up-{i}", {})
    client.call("whoami")  # handled after the emits above: they have been counted

    text = requests.get(node.url + "/metrics", timeout=5).text

    assert metric(text, "wsk_events_received_total", event="other") >= 5
    assert "made-up" not in text


def test_a_node_with_socketio_under_a_path_serves_only_that_path(tmp_path):
    redis = RedisServer(tmp_path).start()
    node = WskNode(tmp_path, "pathed", redis.url, path="/live").start()
    try:
        handshake = {"EIO": "4", "transport": "polling"}
        assert requests.get(node.url + "/live/", params=handshake, timeout=5).status_code == 200
        assert requests.get(node.url + "/", params=handshake, timeout=5).status_code == 404
        assert requests.get(node.url + "/healthz", timeout=5).status_code == 200
    finally:
        node.stop()
        redis.stop()
