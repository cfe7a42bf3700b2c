"""The okok heartbeat each node broadcasts to every client of the cluster."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import random
import socket
import struct
import time
from typing import Any

import socketio

from wsk.metrics import Metrics

log = logging.getLogger("wsk.heartbeat")

SIOCGIFADDR = 0x8915


def heartbeat_payload(node_name: str, host_ip: str) -> dict[str, Any]:
    """What one heartbeat says."""
    return {
        "node": node_name,
        "host": host_ip,
        "text": f"I am the host: {host_ip}. I am healthy.",
        "time": time.time(),
    }


def run_heartbeat(
    sio: socketio.Server,
    node_name: str,
    host_ip: str,
    interval: float,
    jitter: float,
    metrics: Metrics,
) -> None:
    """Broadcast ``okok`` every ``interval`` plus up to ``jitter`` seconds, forever."""
    while True:
        sio.sleep(interval + random.uniform(0, jitter))
        try:
            sio.emit("okok", heartbeat_payload(node_name, host_ip))
        except Exception:
            log.exception("heartbeat failed")
            continue
        metrics.heartbeats.inc()


def private_ipv4() -> str:
    """This host's private IPv4 address, as peers on its network see it.

    First the address the host name resolves to, as the seed did; when that is a
    loopback address (Debian maps the host name to 127.0.1.1), the address of the
    interface that carries the default route; 127.0.0.1 when there is none.
    """
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = "127.0.0.1"
    if not ipaddress.ip_address(address).is_loopback:
        return address
    interface = _default_route_interface()
    if interface:
        found = _interface_ipv4(interface)
        if found:
            return found
    return address


def _default_route_interface() -> str | None:
    try:
        with open("/proc/net/route") as routes:
            next(routes, None)
            for line in routes:
                fields = line.split()
                if len(fields) > 1 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def _interface_ipv4(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])
