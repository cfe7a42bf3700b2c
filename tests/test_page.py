"""The live page, served by the nodes and watched in a real browser.

Headless Chromium from Debian's package, driven by Playwright for Python pointed at it
(no browser downloaded), against two real nodes behind a real HAProxy at the public
prefix /wsk. Screenshots go to tests/artifacts/ (WSK_TEST_ARTIFACTS), which git ignores.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from processes import HAProxy, RedisServer, WskNode, require

ARTIFACTS = Path(os.environ.get("WSK_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
# the machine is shared and small: wait generously for what the page shows
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=require("chromium"), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def contexts(browser: Browser):
    """Opens browser contexts (separate cookie jars: separate visitors); closes them after."""
    opened: list[BrowserContext] = []

    def open_context(haproxy: HAProxy, node: str | None = None) -> BrowserContext:
        context = browser.new_context(viewport={"width": 1200, "height": 860})
        if node is not None:
            # HAProxy's stickiness cookie: this visitor's connection goes to that node
            context.add_cookies([{"name": HAProxy.COOKIE, "value": node, "url": haproxy.url}])
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


def visit(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    return page


def node_row(page: Page, name: str):
    return page.locator(f'#nodes tr[data-node="{name}"]')


def join(page: Page, room: str) -> None:
    page.fill("#room", room)
    page.click("#join")
    expect(page.locator("#joined")).to_have_attribute("data-room", room, timeout=WAIT_MS)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_the_page_and_its_assets_come_from_the_node_at_any_prefix(tmp_path):
    redis = RedisServer(tmp_path).start()
    node = WskNode(tmp_path, "node1", redis.url, path="/rt/").start()
    try:
        # through HAProxy the page is at /wsk, on the node at its Socket.IO path
        page = requests.get(node.url + "/rt/", timeout=5)
        bundle = requests.get(node.url + "/rt/?asset=socket.io.min.js", timeout=5)
        missing = requests.get(node.url + "/rt/?asset=../config.py", timeout=5)
        handshake = requests.get(node.url + "/rt/?EIO=4&transport=polling", timeout=5)
        root = requests.get(node.url + "/", timeout=5)
    finally:
        node.stop()
        redis.stop()
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # the node's heartbeat timing, for the page to tell a late node from a live one
    assert 'data-heartbeat="0.5"' in page.text
    assert 'src="?asset=socket.io.min.js"' in page.text
    assert bundle.status_code == 200
    assert bundle.headers["Content-Type"].startswith("text/javascript")
    assert bundle.text.startswith("/*!\n * Socket.IO v4.8.")
    assert missing.status_code == 404
    # an Engine.IO request at the same path is still Socket.IO's
    assert handshake.status_code == 200 and handshake.text.startswith("0{")
    assert root.status_code == 404


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_page_shows_every_node_and_its_own_connection(shared_cluster, contexts, transport):
    haproxy = shared_cluster.haproxy
    page = visit(contexts(haproxy), f"{haproxy.url}/wsk?transport={transport}")

    for node in shared_cluster.nodes:
        expect(node_row(page, node.name)).to_have_attribute("data-state", "up", timeout=WAIT_MS)
        expect(node_row(page, node.name).locator(".host")).not_to_be_empty()
    expect(page.locator("#me-transport")).to_have_text(transport, timeout=WAIT_MS)
    expect(page.locator("#me-sid")).to_have_text(
        # wsk's sids name their node: <server name>~<random>
        re.compile(r"^node[12]~"),
        timeout=WAIT_MS,
    )
    mine = page.locator("#me-node").inner_text()
    assert mine in {n.name for n in shared_cluster.nodes}
    expect(page.locator("#nodes tr.mine")).to_have_attribute("data-node", mine)


def test_a_message_published_in_one_browser_reaches_a_browser_on_the_other_node(
    shared_cluster, contexts
):
    haproxy = shared_cluster.haproxy
    url = f"{haproxy.url}/wsk/"
    alice = visit(contexts(haproxy, "node1"), url)
    bob = visit(contexts(haproxy, "node2"), url)
    expect(alice.locator("#me-node")).to_have_text("node1", timeout=WAIT_MS)
    expect(bob.locator("#me-node")).to_have_text("node2", timeout=WAIT_MS)
    room = f"page-{uuid.uuid4().hex[:8]}"
    join(alice, room)
    join(bob, room)

    for n in range(5):
        text = f"hello from node1 #{n} {uuid.uuid4().hex[:6]}"
        alice.fill("#text", text)
        alice.click("#publish")
        arrived = bob.locator(f'#messages li[data-text="{text}"]')
        expect(arrived).to_have_count(1, timeout=WAIT_MS)
        # published on alice's node, delivered to bob by his own
        expect(arrived).to_have_attribute("data-node", "node1")
        expect(arrived.locator(".latency-ms")).to_have_text(re.compile(r"^\d+ ms$"))
        expect(alice.locator(f'#messages li[data-text="{text}"]')).to_have_count(1, timeout=WAIT_MS)
    screenshot(bob, "page-two-browsers.png")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_killed_node_shows_as_gone_and_the_browser_reconnects_to_the_other(
    cluster, contexts, transport
):
    cluster.start()
    haproxy = cluster.haproxy
    page = visit(contexts(haproxy, "node1"), f"{haproxy.url}/wsk/?transport={transport}")
    expect(page.locator("#me-node")).to_have_text("node1", timeout=WAIT_MS)
    # the page knows a node only once it has heard its okok: wait for both, or
    # node1 can be killed before its first beat reached the page and never show
    for name in ("node1", "node2"):
        expect(node_row(page, name)).to_have_attribute("data-state", "up", timeout=WAIT_MS)
    join(page, "survivors")

    cluster.nodes[0].signal(signal.SIGKILL)

    expect(page.locator("#me-node")).to_have_text("node2", timeout=WAIT_MS)
    expect(page.locator("#reconnects")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    # it stops beating: late first, then gone; the other stays up
    expect(node_row(page, "node1")).to_have_attribute("data-state", "gone", timeout=WAIT_MS)
    expect(node_row(page, "node2")).to_have_attribute("data-state", "up")
    expect(page.locator("#nodes tr.mine")).to_have_attribute("data-node", "node2")
    # back in its room on the new node: a message published there reaches it
    page.fill("#text", "after the fall")
    page.click("#publish")
    arrived = page.locator('#messages li[data-text="after the fall"]')
    # published on, and delivered by, the node that is left
    expect(arrived).to_have_attribute("data-node", "node2", timeout=WAIT_MS)
    path = screenshot(page, f"page-node-gone-{transport}.png")
    assert path.stat().st_size > 10_000
