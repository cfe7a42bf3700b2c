"""Fixtures: a real Redis, real wsk nodes and a real HAProxy on free loopback ports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from clients import RecordingClient
from processes import HAProxy, RedisServer, WskNode


class Cluster:
    """Redis, two or more nodes and HAProxy; stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: RedisServer | None = None
        self.nodes: list[WskNode] = []
        self.haproxy: HAProxy | None = None
        self.clients: list[RecordingClient] = []

    def start(
        self,
        nodes: int = 2,
        sticky: bool = True,
        redis_aof: bool = False,
        tls: bool = False,
        **node_options,
    ) -> Cluster:
        self.redis = RedisServer(self.workdir, aof=redis_aof).start()
        self.nodes = [
            WskNode(self.workdir, f"node{i}", self.redis.url, **node_options).start()
            for i in range(1, nodes + 1)
        ]
        self.haproxy = HAProxy(self.workdir, self.nodes, sticky=sticky, tls=tls).start()
        return self

    def client(
        self, transport: str = "websocket", url: str | None = None, auth=None, **kwargs
    ) -> RecordingClient:
        client = RecordingClient(**kwargs)
        self.clients.append(client)
        return client.connect(url or self.haproxy.url, transport=transport, auth=auth)

    def node_client(self, node: WskNode, transport: str = "websocket") -> RecordingClient:
        """A client connected to one node directly, without HAProxy."""
        client = RecordingClient()
        self.clients.append(client)
        return client.connect(node.url, path="/", transport=transport)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for process in [self.haproxy, *self.nodes, self.redis]:
            if process is not None:
                process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name}\n{p.log()[-4000:]}" for p in [*self.nodes, self.haproxy] if p
        )


@pytest.fixture
def cluster(tmp_path, request):
    """A fresh cluster for tests that stop or break parts of it."""
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(cluster.logs())


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """One cluster shared by the tests of a module that leave it as they found it."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
